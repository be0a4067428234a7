//! Which channels a stream may join. A channel is a tag the client asks
//! for (`?tag=room:blue`); tags the server sets from identity (roles) are
//! facts about the user and never come from the request.
//!
//! Two sources decide: a stream opened with a stream token may join what
//! the token's claims list ([`ChannelGrant`]); a stream opened with the
//! host's own session asks the host's [`ChannelPolicy`]. Either way a
//! channel that is not allowed refuses the whole stream (403), before
//! anything is registered or sent.

use std::fmt;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::target::{Identity, Tag, TagError};

/// The host's rule for the channels of streams opened with its own
/// sessions. Asked once per requested channel each time a stream opens
/// (reconnects too), before the stream is admitted: keep it to an indexed
/// lookup at most.
///
/// ```
/// use axum_sse_notify::{ChannelPolicy, Identity, Tag};
/// use futures::future::BoxFuture;
///
/// /// `page:*` for everyone; `team:<id>` for members only.
/// struct Teams;
///
/// impl ChannelPolicy for Teams {
///     fn allows<'a>(&'a self, who: &'a Identity, channel: &'a Tag) -> BoxFuture<'a, bool> {
///         Box::pin(async move {
///             match channel.key() {
///                 "page" => true,
///                 "team" => who.user.as_str() == "ann" && channel.value() == "42",
///                 _ => false,
///             }
///         })
///     }
/// }
/// ```
pub trait ChannelPolicy: Send + Sync + 'static {
    /// Whether `who` may join `channel`. Reserved keys (roles, ids) never
    /// reach this: they are refused before.
    fn allows<'a>(&'a self, who: &'a Identity, channel: &'a Tag) -> BoxFuture<'a, bool>;
}

/// Any channel under a key that is not reserved: what the layer did before
/// channels could be private, and still its default. A host whose tags
/// must be private replaces it with its own [`ChannelPolicy`] (see
/// `Notifier::with_channel_policy`).
#[derive(Debug, Clone, Copy, Default)]
pub struct OpenChannels;

impl ChannelPolicy for OpenChannels {
    fn allows<'a>(&'a self, _: &'a Identity, _: &'a Tag) -> BoxFuture<'a, bool> {
        Box::pin(async { true })
    }
}

/// No client-chosen channel at all: streams carry only their identity's
/// tags.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoChannels;

impl ChannelPolicy for NoChannels {
    fn allows<'a>(&'a self, _: &'a Identity, _: &'a Tag) -> BoxFuture<'a, bool> {
        Box::pin(async { false })
    }
}

/// One entry of a grant: a channel (`room:blue`), or every channel under
/// a key (`page:*`).
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum ChannelPattern {
    Exact(Tag),
    AnyUnder(String),
}

impl ChannelPattern {
    /// `key:value`, or `key:*` for every value under `key`.
    pub fn parse(text: &str) -> Result<Self, TagError> {
        if let Some(key) = text.strip_suffix(":*") {
            // Checked as a tag's key would be.
            let tag = Tag::new(key, "x")?;
            return Ok(ChannelPattern::AnyUnder(tag.key().to_string()));
        }
        Tag::parse(text).map(ChannelPattern::Exact)
    }

    pub fn matches(&self, channel: &Tag) -> bool {
        match self {
            ChannelPattern::Exact(tag) => tag == channel,
            ChannelPattern::AnyUnder(key) => key == channel.key(),
        }
    }

    pub fn key(&self) -> &str {
        match self {
            ChannelPattern::Exact(tag) => tag.key(),
            ChannelPattern::AnyUnder(key) => key,
        }
    }
}

impl fmt::Display for ChannelPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChannelPattern::Exact(tag) => fmt::Display::fmt(tag, f),
            ChannelPattern::AnyUnder(key) => write!(f, "{key}:*"),
        }
    }
}

impl fmt::Debug for ChannelPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for ChannelPattern {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ChannelPattern {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        ChannelPattern::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// The channels a stream token lets its holder join: nothing else.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ChannelGrant(pub Vec<ChannelPattern>);

impl ChannelGrant {
    pub fn allows(&self, channel: &Tag) -> bool {
        self.0.iter().any(|pattern| pattern.matches(channel))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_parse_and_match() {
        let blue = Tag::parse("room:blue").unwrap();
        let red = Tag::parse("room:red").unwrap();
        let exact = ChannelPattern::parse("room:blue").unwrap();
        assert!(exact.matches(&blue) && !exact.matches(&red));
        let any = ChannelPattern::parse("room:*").unwrap();
        assert!(any.matches(&blue) && any.matches(&red));
        assert!(!any.matches(&Tag::parse("page:room").unwrap()));
        assert_eq!(any.to_string(), "room:*");
        for bad in ["room", "*", ":*", "a b:*", "room:", "room:*x"] {
            assert!(ChannelPattern::parse(bad).is_err(), "{bad}");
        }
        let grant: ChannelGrant = serde_json::from_str(r#"["room:blue","page:*"]"#).unwrap();
        assert!(grant.allows(&blue) && !grant.allows(&red));
        assert!(grant.allows(&Tag::parse("page:home").unwrap()));
        assert!(!ChannelGrant::default().allows(&blue));
    }
}
