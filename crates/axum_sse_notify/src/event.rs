//! Events: a name plus a JSON payload, and their wire encoding.
//!
//! This module compiles for the server and for the browser: a type that
//! implements [`SseEvent`] is serialised by [`crate::Notifier`] and
//! decoded by the browser hook under the same, compiler-checked name.

use std::borrow::Cow;
use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Longest accepted event name, in bytes.
pub const MAX_EVENT_NAME_LEN: usize = 128;

/// Names the server itself sends on every stream, which the browser hook
/// acts on (`connected` carries the client id; replay and the inbox add
/// theirs). Application code may not send them: a forged `connected`
/// would wipe a browser's client id.
pub const RESERVED_EVENT_NAMES: &[&str] = &[
    "connected",
    "sse-reset",
    "sse-drain",
    "inbox",
    "sse-presence",
];

/// Binds a Rust type to an event name. Implement it in code shared by the
/// server and the browser:
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use axum_sse_notify::SseEvent;
///
/// #[derive(Serialize, Deserialize)]
/// struct OrderShipped { order: u64 }
///
/// impl SseEvent for OrderShipped {
///     const NAME: &'static str = "order-shipped";
/// }
/// ```
pub trait SseEvent: Serialize + DeserializeOwned {
    /// The SSE `event:` field. Must pass [`EventName::new`].
    const NAME: &'static str;
    /// Whether the event is kept in the user's inbox (sent with
    /// `Notifier::notify`, which stores it before publishing it) rather
    /// than live only (`Notifier::send`, which refuses persistent types at
    /// compile time).
    const PERSISTENT: bool = false;
}

/// An event name that is safe to put on the wire: non-empty, at most
/// [`MAX_EVENT_NAME_LEN`] bytes, without CR, LF or other control characters.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct EventName(Cow<'static, str>);

impl EventName {
    pub fn new(name: impl Into<Cow<'static, str>>) -> Result<Self, EventError> {
        let name = name.into();
        if name.is_empty() {
            return Err(EventError::EmptyName);
        }
        if name.len() > MAX_EVENT_NAME_LEN {
            return Err(EventError::NameTooLong {
                len: name.len(),
                max: MAX_EVENT_NAME_LEN,
            });
        }
        if name.chars().any(char::is_control) {
            return Err(EventError::NameHasControlCharacter);
        }
        if RESERVED_EVENT_NAMES.contains(&&*name) {
            return Err(EventError::ReservedName(name.into_owned()));
        }
        Ok(EventName(name))
    }

    /// One of [`RESERVED_EVENT_NAMES`], for the server's own events.
    #[cfg(feature = "server")]
    pub(crate) const fn reserved(name: &'static str) -> Self {
        EventName(Cow::Borrowed(name))
    }

    /// A name read back from the bus, written by a process of ours: the
    /// server's own names are allowed, what is unsafe on the wire is not.
    #[cfg(feature = "server")]
    #[cfg_attr(not(feature = "redis"), allow(dead_code))] // used by the Redis bus
    pub(crate) fn trusted(name: String) -> Result<Self, EventError> {
        if RESERVED_EVENT_NAMES.contains(&name.as_str()) {
            return Ok(EventName(Cow::Owned(name)));
        }
        Self::new(name)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for EventName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for EventName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An event ready to send: a checked name and its payload serialised to
/// JSON text (exactly once, however many clients receive it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    name: EventName,
    data: String,
}

impl Event {
    /// A typed event: the name comes from the type.
    pub fn typed<E: SseEvent>(payload: &E) -> Result<Self, EventError> {
        Self::new(E::NAME, payload)
    }

    /// An untyped event: any name, any serialisable payload
    /// (`serde_json::Value` included).
    pub fn new(
        name: impl Into<Cow<'static, str>>,
        payload: &impl Serialize,
    ) -> Result<Self, EventError> {
        let name = EventName::new(name)?;
        let data =
            serde_json::to_string(payload).map_err(|e| EventError::Serialize(e.to_string()))?;
        Ok(Event { name, data })
    }

    /// An event whose data is sent as given, not as JSON (multi-line text
    /// included). Clients receive it as a plain string.
    pub fn text(
        name: impl Into<Cow<'static, str>>,
        data: impl Into<String>,
    ) -> Result<Self, EventError> {
        Ok(Event {
            name: EventName::new(name)?,
            data: data.into(),
        })
    }

    /// One of the server's own events ([`RESERVED_EVENT_NAMES`]).
    #[cfg(feature = "server")]
    #[cfg_attr(not(feature = "inbox"), allow(dead_code))] // the inbox's summary event
    pub(crate) fn reserved(name: &'static str, payload: &impl Serialize) -> Self {
        Event {
            name: EventName::reserved(name),
            data: serde_json::to_string(payload).unwrap_or_default(),
        }
    }

    /// An event read back from the bus (its data was checked when sent).
    #[cfg(feature = "server")]
    #[cfg_attr(not(feature = "redis"), allow(dead_code))] // used by the Redis bus
    pub(crate) fn from_parts(name: EventName, data: String) -> Self {
        Event { name, data }
    }

    pub fn name(&self) -> &EventName {
        &self.name
    }

    pub fn data(&self) -> &str {
        &self.data
    }
}

/// Why an event cannot be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("event name is empty")]
    EmptyName,
    #[error("event name is {len} bytes long; the limit is {max}")]
    NameTooLong { len: usize, max: usize },
    #[error("event name contains a control character (such as CR or LF)")]
    NameHasControlCharacter,
    #[error("event name `{0}` is reserved for the server's own events")]
    ReservedName(String),
    #[error("payload is {size} bytes; the limit is {max}")]
    PayloadTooLarge { size: usize, max: usize },
    #[error("payload cannot be serialised to JSON: {0}")]
    Serialize(String),
    #[error("{max} sends are already waiting for the bus; try again shortly")]
    BusBusy { max: usize },
}

/// Decodes an event's data as the typed payload (used by the browser).
pub fn decode<E: SseEvent>(data: &str) -> Result<E, serde_json::Error> {
    serde_json::from_str(data)
}

/// Appends one SSE frame (`id:`, `event:`, `data:` lines, blank line) to
/// `out`.
///
/// Data is split into lines at CR LF, CR or LF, as the WHATWG parser does,
/// and each line becomes its own `data:` field, so the browser rebuilds the
/// text with LF between lines. A trailing line break is kept by a final
/// empty `data:` line.
pub fn write_frame(out: &mut Vec<u8>, id: Option<&str>, name: &EventName, data: &str) {
    out.reserve(data.len() + name.as_str().len() + 80);
    if let Some(id) = id {
        out.extend_from_slice(b"id: ");
        out.extend_from_slice(id.as_bytes());
        out.push(b'\n');
    }
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_str().as_bytes());
    out.push(b'\n');
    for line in split_lines(data) {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
    }
    out.push(b'\n');
}

/// Splits at CR LF, CR and LF. Yields at least one (possibly empty) line.
fn split_lines(data: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(data);
    std::iter::from_fn(move || {
        let text = rest?;
        match text.find(['\r', '\n']) {
            Some(at) => {
                let skip = if text[at..].starts_with("\r\n") { 2 } else { 1 };
                rest = Some(&text[at + skip..]);
                Some(&text[..at])
            }
            None => {
                rest = None;
                Some(text)
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    fn frame(data: &str) -> String {
        let mut out = Vec::new();
        write_frame(&mut out, Some("7"), &EventName::new("note").unwrap(), data);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn single_line_frame() {
        assert_eq!(
            frame("{\"a\":1}"),
            "id: 7\nevent: note\ndata: {\"a\":1}\n\n"
        );
    }

    #[test]
    fn every_line_break_kind_becomes_its_own_data_line() {
        assert_eq!(frame("a\nb"), "id: 7\nevent: note\ndata: a\ndata: b\n\n");
        assert_eq!(frame("a\rb"), "id: 7\nevent: note\ndata: a\ndata: b\n\n");
        assert_eq!(frame("a\r\nb"), "id: 7\nevent: note\ndata: a\ndata: b\n\n");
        assert_eq!(
            frame("a\n\r\nb\r"),
            "id: 7\nevent: note\ndata: a\ndata: \ndata: b\ndata: \n\n"
        );
        assert_eq!(frame(""), "id: 7\nevent: note\ndata: \n\n");
    }

    #[test]
    fn unicode_passes_through_unchanged() {
        assert_eq!(
            frame("héllo 👋\n世界"),
            "id: 7\nevent: note\ndata: héllo 👋\ndata: 世界\n\n"
        );
    }

    #[test]
    fn json_payloads_never_contain_raw_line_breaks() {
        let event = Event::new("note", &serde_json::json!({"text": "a\nb\r\nc"})).unwrap();
        assert_eq!(event.data(), r#"{"text":"a\nb\r\nc"}"#);
        assert!(!frame(event.data()).contains("data: b"));
    }

    #[test]
    fn names_are_validated() {
        assert_eq!(EventName::new(""), Err(EventError::EmptyName));
        assert_eq!(
            EventName::new("a\nb"),
            Err(EventError::NameHasControlCharacter)
        );
        assert_eq!(
            EventName::new("a\rb"),
            Err(EventError::NameHasControlCharacter)
        );
        assert_eq!(
            EventName::new("x".repeat(MAX_EVENT_NAME_LEN + 1)),
            Err(EventError::NameTooLong {
                len: MAX_EVENT_NAME_LEN + 1,
                max: MAX_EVENT_NAME_LEN
            })
        );
        assert!(EventName::new("x".repeat(MAX_EVENT_NAME_LEN)).is_ok());
        assert!(EventName::new("order-shipped.v2").is_ok());
        assert!(EventName::new("ünïcode").is_ok());
    }

    #[test]
    fn the_servers_own_names_are_refused() {
        for name in RESERVED_EVENT_NAMES {
            assert_eq!(
                EventName::new(*name),
                Err(EventError::ReservedName(name.to_string()))
            );
            assert!(Event::new(*name, &1).is_err());
            assert!(Event::text(*name, "x").is_err());
        }
        // Only the exact names: a prefix or another case is the app's own.
        assert!(EventName::new("connected-users").is_ok());
        assert!(EventName::new("Connected").is_ok());
    }

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Shipped {
        order: u64,
        note: String,
    }

    impl SseEvent for Shipped {
        const NAME: &'static str = "order-shipped";
    }

    #[test]
    fn typed_events_round_trip_under_their_name() {
        let sent = Shipped {
            order: 42,
            note: "two\nlines".into(),
        };
        let event = Event::typed(&sent).unwrap();
        assert_eq!(event.name().as_str(), "order-shipped");
        assert_eq!(decode::<Shipped>(event.data()).unwrap(), sent);
    }
}
