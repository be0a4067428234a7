//! Who receives an event: identities, tags and [`Target`].

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// Tag keys a client can never set with `?tag=`: they carry identity and
/// roles, which only the server assigns, and the presence flag.
pub const RESERVED_TAG_KEYS: &[&str] = &["role", "user", "session", "client", PRESENCE_KEY];

/// The tag of streams that asked for presence events (`?presence=true`):
/// set by the server, never by `?tag=`.
pub const PRESENCE_KEY: &str = "sse-presence";

/// Longest tag key or value, in bytes.
pub const MAX_TAG_PART_LEN: usize = 64;

/// A user id, as the app's accounts define it. Opaque to the SSE layer.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UserId(Arc<str>);

/// A sign-in session id. Opaque to the SSE layer.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SessionId(Arc<str>);

macro_rules! string_id {
    ($t:ident) => {
        impl $t {
            pub fn new(id: impl Into<Arc<str>>) -> Self {
                $t(id.into())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&*self.0, f)
            }
        }

        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}
string_id!(UserId);
string_id!(SessionId);

/// One SSE connection (one browser tab), assigned by the server.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ClientId(uuid::Uuid);

impl ClientId {
    pub fn random() -> Self {
        ClientId(uuid::Uuid::new_v4())
    }

    pub fn parse(text: &str) -> Option<Self> {
        uuid::Uuid::parse_str(text.trim()).ok().map(ClientId)
    }
}

impl fmt::Debug for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// A `key:value` label on a connection, used to target groups of clients.
/// Server-side tags (such as `role:admin`) come from identity; clients may
/// add their own (`?tag=page:home`) except under reserved keys.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag {
    key: Arc<str>,
    value: Arc<str>,
}

impl Tag {
    /// Both parts: 1 to [`MAX_TAG_PART_LEN`] bytes of ASCII letters, digits
    /// and `-_.`, so tags are safe in logs, URLs and Redis channel names.
    pub fn new(key: &str, value: &str) -> Result<Self, TagError> {
        check_part("key", key)?;
        check_part("value", value)?;
        Ok(Tag {
            key: key.into(),
            value: value.into(),
        })
    }

    /// Parses `key:value` (or `key=value`).
    pub fn parse(text: &str) -> Result<Self, TagError> {
        let (key, value) = text
            .split_once([':', '='])
            .ok_or_else(|| TagError(format!("tag {text:?} is not of the form key:value")))?;
        Tag::new(key, value)
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn value(&self) -> &str {
        &self.value
    }
}

fn check_part(what: &str, part: &str) -> Result<(), TagError> {
    if part.is_empty() || part.len() > MAX_TAG_PART_LEN {
        return Err(TagError(format!(
            "tag {what} must be 1 to {MAX_TAG_PART_LEN} bytes long"
        )));
    }
    if !part
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(TagError(format!(
            "tag {what} {part:?} may only contain ASCII letters, digits, '-', '_' and '.'"
        )));
    }
    Ok(())
}

impl fmt::Debug for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.key, self.value)
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.key, self.value)
    }
}

impl Serialize for Tag {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Tag {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Tag::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A tag that failed validation; the text says why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TagError(String);

/// Which connections an event goes to: a scope, narrowed by tags (a client
/// must carry every tag listed).
///
/// ```
/// use axum_sse_notify::{Target, UserId};
///
/// let everyone = Target::all();
/// let alice_on_home = Target::user(UserId::new("alice")).with_tag("page", "home");
/// let admins = Target::tag("role", "admin");
/// # let _ = (everyone, alice_on_home, admins);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    scope: Scope,
    tags: Vec<Tag>,
}

/// The widest set a [`Target`] starts from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Every connected client.
    All,
    /// Every connection of one user (all tabs, all sessions).
    User(UserId),
    /// Every connection of one sign-in session.
    Session(SessionId),
    /// These connections.
    Clients(Vec<ClientId>),
}

impl Target {
    pub fn all() -> Self {
        Target {
            scope: Scope::All,
            tags: Vec::new(),
        }
    }

    pub fn user(user: UserId) -> Self {
        Target {
            scope: Scope::User(user),
            tags: Vec::new(),
        }
    }

    pub fn session(session: SessionId) -> Self {
        Target {
            scope: Scope::Session(session),
            tags: Vec::new(),
        }
    }

    pub fn clients(clients: impl IntoIterator<Item = ClientId>) -> Self {
        Target {
            scope: Scope::Clients(clients.into_iter().collect()),
            tags: Vec::new(),
        }
    }

    /// Everyone carrying `key:value`.
    ///
    /// # Panics
    /// If the tag is invalid: this form is for tags written in code. Use
    /// [`Target::with`] and [`Tag::new`] for tags from input.
    pub fn tag(key: &str, value: &str) -> Self {
        Target::all().with_tag(key, value)
    }

    /// Narrows to clients that also carry `key:value`.
    ///
    /// # Panics
    /// If the tag is invalid (see [`Target::tag`]).
    pub fn with_tag(self, key: &str, value: &str) -> Self {
        match Tag::new(key, value) {
            Ok(tag) => self.with(tag),
            Err(e) => panic!("invalid tag in code: {e}"),
        }
    }

    /// Narrows to clients that also carry `tag`.
    pub fn with(mut self, tag: Tag) -> Self {
        if !self.tags.contains(&tag) {
            self.tags.push(tag);
        }
        self
    }

    pub fn scope(&self) -> &Scope {
        &self.scope
    }

    /// Whether this target selects `recipient`: the one definition of who
    /// receives what. Live sends reach the same clients faster through the
    /// registry's indexes (a test keeps the two in agreement); replays
    /// filter the history with this.
    pub fn selects(&self, recipient: &Recipient<'_>) -> bool {
        let in_scope = match &self.scope {
            Scope::All => true,
            Scope::User(user) => user == recipient.user,
            Scope::Session(session) => session == recipient.session,
            Scope::Clients(ids) => ids.contains(&recipient.client),
        };
        in_scope && self.tags.iter().all(|t| recipient.tags.contains(t))
    }

    pub fn tags(&self) -> &[Tag] {
        &self.tags
    }
}

/// What targeting looks at on one connection.
#[derive(Debug, Clone, Copy)]
pub struct Recipient<'a> {
    pub client: ClientId,
    pub user: &'a UserId,
    pub session: &'a SessionId,
    /// Every tag of the connection: the identity's and the client's own.
    pub tags: &'a [Tag],
}

/// Who is on the other end of a connection. `auth` inserts it as a request
/// extension; the SSE layer only reads it, so identity never comes from
/// anything the client sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub user: UserId,
    /// The display name (shown in client listings).
    pub username: String,
    pub session: SessionId,
    /// Server-side tags, e.g. `role:admin`. Clients cannot add tags under
    /// these keys.
    pub tags: Vec<Tag>,
    /// When this sign-in began (unix ms), if the app knows: a resume never
    /// replays events published before it (they were not this sign-in's
    /// to see), and is answered with `sse-reset` instead.
    pub since: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_parse_and_validate() {
        let tag = Tag::parse("page:home").unwrap();
        assert_eq!((tag.key(), tag.value()), ("page", "home"));
        assert_eq!(Tag::parse("page=home").unwrap(), tag);
        assert!(Tag::parse("nocolon").is_err());
        assert!(Tag::parse(":x").is_err());
        assert!(Tag::parse("x:").is_err());
        assert!(Tag::parse("a b:c").is_err());
        assert!(Tag::parse("a:b\nc").is_err());
        assert!(Tag::parse(&format!("k:{}", "v".repeat(MAX_TAG_PART_LEN + 1))).is_err());
        assert_eq!(tag.to_string(), "page:home");
        assert_eq!(serde_json::to_string(&tag).unwrap(), "\"page:home\"");
    }

    #[test]
    fn targets_collect_distinct_tags() {
        let target = Target::user(UserId::new("u1"))
            .with_tag("page", "home")
            .with_tag("page", "home")
            .with_tag("lang", "en");
        assert_eq!(target.scope(), &Scope::User(UserId::new("u1")));
        assert_eq!(target.tags().len(), 2);
    }
}
