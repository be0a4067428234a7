//! [`Auth`]: what the auth middleware and server functions share.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tower_sessions::Session;

use super::CurrentUser;
use super::rate_limit::{LOGIN_SLOWDOWN, LoginSlowdown, RateLimiter};
use super::stream_sessions::StreamSessions;
use crate::sse::{Identity, SessionId, Tag, UserId};
use crate::store::Db;
use crate::store::sessions::{LOADED_EXPIRES_AT, LOADED_ROLE};
use crate::store::users::Role;

/// Session keys. The session handle is a random id of the sign-in that may
/// be shown (in client listings, logs); the session's own id is the
/// cookie's secret and never leaves the session layer.
pub(crate) const KEY_USER_ID: &str = crate::store::sessions::USER_ID;
pub(crate) const KEY_USERNAME: &str = "username";
pub(crate) const KEY_HANDLE: &str = "handle";
/// When the sign-in began (unix ms): a stream never replays from before.
pub(crate) const KEY_SIGNED_IN_AT: &str = "signed_in_at";

/// When the session cookie carries `Secure`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecureCookie {
    /// When the request came over https (per `X-Forwarded-Proto` from the
    /// proxy in front).
    Auto,
    Always,
    Never,
}

/// `[auth]` settings. (Roles are not configured here: the operator grants
/// them to existing accounts, see `sse_notify admin`.)
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// A session unused for this long expires.
    pub session_ttl: Duration,
    pub secure_cookie: SecureCookie,
    /// Sign-in attempts per username from one client address per window
    /// (not per username alone: guesses from elsewhere must not lock the
    /// owner out). Failures from all addresses together beyond twice this
    /// only slow that name's sign-ins down.
    pub login_attempts_per_user: u32,
    /// Sign-in and sign-up attempts per client address per window.
    pub login_attempts_per_ip: u32,
    pub login_window: Duration,
    /// How long a stream connect's session answer is remembered (see
    /// [`StreamSessions`]); zero reads the database on every connect.
    pub stream_session_cache: Duration,
    /// Sessions remembered so, at most.
    pub stream_session_cache_max: usize,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            session_ttl: Duration::from_secs(7 * 24 * 3600),
            secure_cookie: SecureCookie::Auto,
            login_attempts_per_user: 10,
            login_attempts_per_ip: 50,
            login_window: Duration::from_secs(300),
            stream_session_cache: Duration::from_secs(10),
            stream_session_cache_max: 100_000,
        }
    }
}

/// Shared by the middleware and the server functions. Cheap to clone.
#[derive(Clone)]
pub struct Auth {
    inner: Arc<Inner>,
}

struct Inner {
    db: Db,
    config: AuthConfig,
    /// Sign-in attempts per (username, address).
    per_user_address: RateLimiter,
    per_ip: RateLimiter,
    /// Failed sign-ins per username, every address: a delay, never a refusal.
    slowdown: LoginSlowdown,
    stream_sessions: Arc<StreamSessions>,
}

/// Keys tracked by each rate limiter, at most.
const MAX_TRACKED: usize = 100_000;

impl Auth {
    pub fn new(db: Db, config: AuthConfig) -> Self {
        Auth {
            inner: Arc::new(Inner {
                per_user_address: RateLimiter::new(
                    config.login_attempts_per_user,
                    config.login_window,
                    MAX_TRACKED,
                ),
                slowdown: LoginSlowdown::new(
                    config.login_attempts_per_user.saturating_mul(2),
                    LOGIN_SLOWDOWN,
                    config.login_window,
                    MAX_TRACKED,
                ),
                per_ip: RateLimiter::new(
                    config.login_attempts_per_ip,
                    config.login_window,
                    MAX_TRACKED,
                ),
                stream_sessions: Arc::new(StreamSessions::new(
                    config.stream_session_cache,
                    config.stream_session_cache_max,
                )),
                db,
                config,
            }),
        }
    }

    pub fn db(&self) -> &Db {
        &self.inner.db
    }

    pub fn config(&self) -> &AuthConfig {
        &self.inner.config
    }

    pub(crate) fn per_user_address(&self) -> &RateLimiter {
        &self.inner.per_user_address
    }

    pub(crate) fn slowdown(&self) -> &LoginSlowdown {
        &self.inner.slowdown
    }

    pub(crate) fn per_ip(&self) -> &RateLimiter {
        &self.inner.per_ip
    }

    /// What stream connects remember of sessions; the session store and
    /// the role watcher tell it what to forget.
    pub fn stream_sessions(&self) -> &Arc<StreamSessions> {
        &self.inner.stream_sessions
    }

    /// [`Auth::user_of`] for a stream connect: remembered for a few
    /// seconds (see [`StreamSessions`] for why only there).
    pub async fn stream_user_of(&self, session: &Session) -> Option<(CurrentUser, Identity)> {
        let cache = &self.inner.stream_sessions;
        let Some(id) = session.id().filter(|_| cache.enabled()) else {
            return self.user_of(session).await;
        };
        if let Some(known) = cache.get(&id, Instant::now()) {
            return Some(known);
        }
        let ticket = cache.ticket();
        let answer = self.user_of(session).await?;
        let expires_at = session.get::<i64>(LOADED_EXPIRES_AT).await.ok().flatten();
        let now = Instant::now();
        // Whole seconds, rounded down: a second early rather than late.
        let expires = expires_at.map(|at| {
            let left = at.saturating_sub(crate::store::now_secs() + 1).max(0);
            now + Duration::from_secs(left.unsigned_abs())
        });
        cache.put(ticket, id, answer.clone(), expires, now);
        Some(answer)
    }

    /// The user signed in on `session`, with the SSE identity of this
    /// sign-in; `None` when signed out, the session expired or the account
    /// is gone. The role is read from the account on every call (with the
    /// session, see `store::sessions`), so that granting or revoking it
    /// takes effect on the next request.
    pub async fn user_of(&self, session: &Session) -> Option<(CurrentUser, Identity)> {
        let get = |key: &'static str| async move {
            match session.get::<String>(key).await {
                Ok(value) => value,
                Err(e) => {
                    tracing::warn!("cannot read the session: {e}");
                    None
                }
            }
        };
        let id = get(KEY_USER_ID).await?;
        let username = get(KEY_USERNAME).await?;
        let handle = get(KEY_HANDLE).await?;
        // Absent in sessions signed in before it was recorded.
        let since = session.get::<u64>(KEY_SIGNED_IN_AT).await.ok().flatten();
        // Read with the session (one query), else (a session loaded
        // before its account was recorded beside it) on its own.
        let role = match session.get::<Option<String>>(LOADED_ROLE).await {
            Ok(Some(loaded)) => Ok(loaded.as_deref().map(Role::from_db)),
            _ => self.inner.db.role_of(&id).await,
        };
        let is_admin = match role {
            Ok(Some(role)) => role == Role::Admin,
            Ok(None) => return None,
            Err(e) => {
                // Fail closed: without the role, no admin rights.
                tracing::warn!("cannot read the role of user {id}: {e}");
                false
            }
        };
        let role = if is_admin { "admin" } else { "user" };
        let identity = Identity {
            user: UserId::new(id.as_str()),
            username: username.clone(),
            session: SessionId::new(handle),
            tags: Tag::new("role", role).into_iter().collect(),
            since,
        };
        Some((
            CurrentUser {
                id,
                username,
                is_admin,
            },
            identity,
        ))
    }
}
