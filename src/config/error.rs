//! Configuration errors, worded for the person running the server.

use std::fmt;
use std::path::PathBuf;

use super::keys::{KEYS, KeySpec};

/// What went wrong while loading the configuration. Each message names the
/// key and where its value came from, so a user can fix it without reading
/// code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// The file exists (or was named explicitly) but could not be read.
    Read { file: PathBuf, reason: String },
    /// The file is not valid TOML.
    Syntax { file: PathBuf, reason: String },
    /// The file has a key (or section) the app does not know.
    UnknownKey { file: PathBuf, key: String },
    /// A key that was removed is set (in the file or the environment).
    Removed {
        key: String,
        origin: Origin,
        instead: &'static str,
    },
    /// A value could not be parsed.
    Invalid {
        key: String,
        origin: Origin,
        value: String,
        expected: String,
    },
}

/// Where a value came from, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Env(String),
    File(PathBuf),
    Default,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Env(var) => write!(f, "environment variable {var}"),
            Origin::File(file) => write!(f, "{}", file.display()),
            Origin::Default => write!(f, "built-in default"),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Read { file, reason } => {
                write!(f, "cannot read config file {}: {reason}", file.display())
            }
            ConfigError::Syntax { file, reason } => {
                write!(
                    f,
                    "config file {} is not valid TOML: {reason}",
                    file.display()
                )
            }
            ConfigError::UnknownKey { file, key } => {
                let known: Vec<String> = KEYS.iter().map(KeySpec::path).collect();
                write!(
                    f,
                    "unknown key `{key}` in {}; known keys: {}",
                    file.display(),
                    known.join(", ")
                )
            }
            ConfigError::Removed {
                key,
                origin,
                instead,
            } => write!(
                f,
                "`{key}` (set in {origin}) is no longer supported: {instead}"
            ),
            ConfigError::Invalid {
                key,
                origin,
                value,
                expected,
            } => write!(
                f,
                "invalid value {value:?} for `{key}` (from {origin}): expected {expected}"
            ),
        }
    }
}

impl std::error::Error for ConfigError {}
