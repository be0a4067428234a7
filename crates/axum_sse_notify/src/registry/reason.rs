//! Why a connection ended: logged, counted, and told to the client.

use serde::Serialize;

/// Why a connection ended. Logged, and counted in the stats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum DisconnectReason {
    /// The browser closed the connection (tab closed, navigation).
    ClientClosed = 1,
    /// Writing to the socket failed.
    WriteError = 2,
    /// The socket accepted no bytes for the server's write timeout.
    IdleTimeout = 3,
    /// The client fell `queue_len` events behind.
    QueueOverflow = 4,
    /// The server is shutting down.
    Shutdown = 5,
    /// Closed by the application (e.g. the user signed out).
    Kicked = 6,
    /// The client sent bytes after its request, beyond a small allowance
    /// (an event stream reads nothing).
    UnexpectedInput = 7,
    /// Its browser reconnected (`client=` with its id) before the server
    /// noticed this connection was gone.
    Replaced = 8,
    /// Ended by a draining server, told to reconnect after a jittered
    /// delay (to another instance, behind a load balancer).
    Drained = 9,
    /// The user's role changed (`sse_notify admin grant|revoke`) while the
    /// stream carried the old `role:` tag; the browser reconnects and
    /// resumes with the new one.
    RolesChanged = 10,
    /// The stream token it was opened with expired: the client mints a
    /// new one and resumes with `Last-Event-ID`.
    TokenExpired = 11,
}

impl DisconnectReason {
    pub(crate) fn from_u8(n: u8) -> Option<Self> {
        Some(match n {
            1 => Self::ClientClosed,
            2 => Self::WriteError,
            3 => Self::IdleTimeout,
            4 => Self::QueueOverflow,
            5 => Self::Shutdown,
            6 => Self::Kicked,
            7 => Self::UnexpectedInput,
            8 => Self::Replaced,
            9 => Self::Drained,
            10 => Self::RolesChanged,
            11 => Self::TokenExpired,
            _ => return None,
        })
    }

    /// Every reason, in number order.
    pub const ALL: [DisconnectReason; 11] = [
        Self::ClientClosed,
        Self::WriteError,
        Self::IdleTimeout,
        Self::QueueOverflow,
        Self::Shutdown,
        Self::Kicked,
        Self::UnexpectedInput,
        Self::Replaced,
        Self::Drained,
        Self::RolesChanged,
        Self::TokenExpired,
    ];

    /// Slots of an array indexed by the reason's number (0 is unused).
    pub const SLOTS: usize = 12;

    /// The reason as a metric label or log field.
    pub fn label(self) -> &'static str {
        match self {
            Self::ClientClosed => "client_closed",
            Self::WriteError => "write_error",
            Self::IdleTimeout => "idle_timeout",
            Self::QueueOverflow => "queue_overflow",
            Self::Shutdown => "shutdown",
            Self::Kicked => "kicked",
            Self::UnexpectedInput => "unexpected_input",
            Self::Replaced => "replaced",
            Self::Drained => "drained",
            Self::RolesChanged => "roles_changed",
            Self::TokenExpired => "token_expired",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClientClosed => "client closed",
            Self::WriteError => "write error",
            Self::IdleTimeout => "idle timeout",
            Self::QueueOverflow => "queue overflow",
            Self::Shutdown => "shutdown",
            Self::Kicked => "closed by the server",
            Self::UnexpectedInput => "unexpected input",
            Self::Replaced => "replaced by its reconnect",
            Self::Drained => "drained",
            Self::RolesChanged => "roles changed",
            Self::TokenExpired => "stream token expired",
        }
    }
}
