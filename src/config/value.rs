//! Parsing of configuration values; one parser for file and environment.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::auth::SecureCookie;

/// A type that can be read from a configuration value. The error is the
/// "expected …" half of the message shown to the user.
pub trait ConfigValue: Sized {
    fn parse(raw: &str) -> Result<Self, String>;
}

impl ConfigValue for String {
    fn parse(raw: &str) -> Result<Self, String> {
        Ok(raw.to_string())
    }
}

impl ConfigValue for PathBuf {
    fn parse(raw: &str) -> Result<Self, String> {
        if raw.is_empty() {
            return Err("a non-empty path".into());
        }
        Ok(PathBuf::from(raw))
    }
}

impl ConfigValue for SocketAddr {
    fn parse(raw: &str) -> Result<Self, String> {
        raw.parse()
            .map_err(|_| "an address and port such as 127.0.0.1:3000".into())
    }
}

impl ConfigValue for bool {
    fn parse(raw: &str) -> Result<Self, String> {
        match raw.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" => Ok(false),
            _ => Err("true or false".into()),
        }
    }
}

macro_rules! unsigned_value {
    ($($t:ty),*) => {$(
        impl ConfigValue for $t {
            fn parse(raw: &str) -> Result<Self, String> {
                raw.replace('_', "").parse().map_err(|_| {
                    format!("a whole number from 0 to {}", <$t>::MAX)
                })
            }
        }
    )*};
}
unsigned_value!(u16, u32, u64, usize);

/// Durations are written with a unit: `500ms`, `45s`, `2m`, `1h`. A bare
/// number means seconds.
impl ConfigValue for Duration {
    fn parse(raw: &str) -> Result<Self, String> {
        let expected = || "a duration such as 45s, 500ms, 2m, 1h or 7d".to_string();
        let split = raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len());
        let (number, unit) = raw.split_at(split);
        let number: u64 = number.parse().map_err(|_| expected())?;
        let millis = match unit.trim() {
            "ms" => Some(number),
            "" | "s" => number.checked_mul(1_000),
            "m" | "min" => number.checked_mul(60_000),
            "h" => number.checked_mul(3_600_000),
            "d" => number.checked_mul(86_400_000),
            _ => None,
        };
        millis.map(Duration::from_millis).ok_or_else(expected)
    }
}

/// A size in bytes: `65536`, `64KiB`, `1MiB` (also `KB`/`MB`, read as
/// powers of 1024).
pub(super) struct ByteSize(pub(super) usize);

impl ConfigValue for ByteSize {
    fn parse(raw: &str) -> Result<Self, String> {
        let expected = || "a size such as 65536, 64KiB or 1MiB".to_string();
        let split = raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len());
        let (number, unit) = raw.split_at(split);
        let number: usize = number.parse().map_err(|_| expected())?;
        let factor = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kb" | "kib" => 1024,
            "m" | "mb" | "mib" => 1024 * 1024,
            _ => return Err(expected()),
        };
        number
            .checked_mul(factor)
            .map(ByteSize)
            .ok_or_else(expected)
    }
}

/// A comma-separated list; empty items are dropped.
pub(super) struct List(pub(super) Vec<String>);

impl ConfigValue for List {
    fn parse(raw: &str) -> Result<Self, String> {
        Ok(List(
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect(),
        ))
    }
}

/// A comma-separated list of IP addresses.
pub(super) struct IpList(pub(super) Vec<std::net::IpAddr>);

impl ConfigValue for IpList {
    fn parse(raw: &str) -> Result<Self, String> {
        let items = List::parse(raw)?.0;
        items
            .iter()
            .map(|item| {
                item.parse()
                    .map_err(|_| format!("IP addresses; {item:?} is not one"))
            })
            .collect::<Result<_, _>>()
            .map(IpList)
    }
}

/// `bus.follow`: `own` or `all`.
pub(super) struct FollowValue(pub(super) crate::sse::Follow);

impl ConfigValue for FollowValue {
    fn parse(raw: &str) -> Result<Self, String> {
        crate::sse::Follow::parse(&raw.to_ascii_lowercase())
            .map(FollowValue)
            .ok_or_else(|| "own or all".into())
    }
}

pub(super) struct SecureCookieValue(pub(super) SecureCookie);

impl ConfigValue for SecureCookieValue {
    fn parse(raw: &str) -> Result<Self, String> {
        match raw.to_ascii_lowercase().as_str() {
            "auto" => Ok(SecureCookieValue(SecureCookie::Auto)),
            "always" | "true" => Ok(SecureCookieValue(SecureCookie::Always)),
            "never" | "false" => Ok(SecureCookieValue(SecureCookie::Never)),
            _ => Err("auto, always or never".into()),
        }
    }
}

/// Leptos' own environment switch, spelled as in cargo-leptos.
pub(super) struct LeptosEnv(pub(super) leptos::config::Env);

impl ConfigValue for LeptosEnv {
    fn parse(raw: &str) -> Result<Self, String> {
        match raw.to_ascii_lowercase().as_str() {
            "prod" | "production" => Ok(LeptosEnv(leptos::config::Env::PROD)),
            "dev" | "development" => Ok(LeptosEnv(leptos::config::Env::DEV)),
            _ => Err("PROD or DEV".into()),
        }
    }
}

/// An address, or nothing (empty).
#[derive(Debug, PartialEq, Eq)]
pub(super) struct OptionalAddr(pub(super) Option<std::net::SocketAddr>);

impl ConfigValue for OptionalAddr {
    fn parse(raw: &str) -> Result<Self, String> {
        if raw.trim().is_empty() {
            return Ok(OptionalAddr(None));
        }
        std::net::SocketAddr::parse(raw).map(|addr| OptionalAddr(Some(addr)))
    }
}

pub(super) struct LogFormatValue(pub(super) super::LogFormat);

impl ConfigValue for LogFormatValue {
    fn parse(raw: &str) -> Result<Self, String> {
        match raw.trim() {
            "text" => Ok(LogFormatValue(super::LogFormat::Text)),
            "json" => Ok(LogFormatValue(super::LogFormat::Json)),
            _ => Err("`text` or `json`".to_string()),
        }
    }
}
