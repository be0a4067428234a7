//! The lookup rules: environment, then file, then default.

use std::collections::BTreeMap;
use std::path::Path;

use super::error::{ConfigError, Origin};
use super::keys::{KEYS, REMOVED, spec_of};
use super::value::ConfigValue;

/// The file and the environment, with the lookup rules in one place.
pub(super) struct Layers<'a> {
    file: Option<(&'a Path, BTreeMap<String, String>)>,
    env: &'a dyn Fn(&str) -> Option<String>,
}

impl<'a> Layers<'a> {
    pub(super) fn new(
        file: Option<(&'a Path, &str)>,
        env: &'a dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        for (section, name, instead) in REMOVED {
            let var = format!("{section}_{name}").to_uppercase();
            if env(&var).is_some() {
                return Err(ConfigError::Removed {
                    key: format!("{section}.{name}"),
                    origin: Origin::Env(var),
                    instead,
                });
            }
        }
        let file = match file {
            Some((path, text)) => Some((path, flatten(path, text)?)),
            None => None,
        };
        Ok(Layers { file, env })
    }

    /// Like [`Layers::get`], plus a check of the parsed value; `check`
    /// returns the "expected …" text on failure.
    pub(super) fn get_checked<T: ConfigValue>(
        &self,
        section: &str,
        name: &str,
        check: impl Fn(&T) -> Result<(), &'static str>,
    ) -> Result<T, ConfigError> {
        let value: T = self.get(section, name)?;
        match check(&value) {
            Ok(()) => Ok(value),
            Err(expected) => {
                let (raw, origin) = self.raw(section, name);
                Err(ConfigError::Invalid {
                    key: spec_of(section, name).path(),
                    origin,
                    value: raw,
                    expected: expected.to_string(),
                })
            }
        }
    }

    /// The value of `section.name` (section `""` for top level), parsed.
    pub(super) fn get<T: ConfigValue>(&self, section: &str, name: &str) -> Result<T, ConfigError> {
        let (raw, origin) = self.raw(section, name);
        T::parse(raw.trim()).map_err(|expected| ConfigError::Invalid {
            key: spec_of(section, name).path(),
            origin,
            value: raw,
            expected,
        })
    }

    /// Whether `section.name` is left at its default: not set in the
    /// environment, and absent from the file or set there to the default
    /// value (the shipped `Leptos.toml` restates the defaults).
    pub(super) fn is_default<T: ConfigValue + PartialEq>(&self, section: &str, name: &str) -> bool {
        let (raw, origin) = self.raw(section, name);
        match origin {
            Origin::Default => true,
            Origin::Env(_) => false,
            Origin::File(_) => match (
                T::parse(raw.trim()),
                T::parse(spec_of(section, name).default),
            ) {
                (Ok(value), Ok(default)) => value == default,
                _ => false,
            },
        }
    }

    /// The text of a value and the layer it came from.
    pub(super) fn raw(&self, section: &str, name: &str) -> (String, Origin) {
        let spec = spec_of(section, name);
        let env_var = spec.env_var();
        if let Some(value) = (self.env)(&env_var) {
            (value, Origin::Env(env_var))
        } else if let Some((value, path)) = self
            .file
            .as_ref()
            .and_then(|(path, map)| map.get(&spec.path()).map(|v| (v.clone(), path)))
        {
            (value, Origin::File(path.to_path_buf()))
        } else {
            (spec.default.to_string(), Origin::Default)
        }
    }
}

/// Turns the TOML document into `section.key → text`, refusing unknown
/// keys. Arrays become comma-separated lists so that the file and the
/// environment share one parser.
fn flatten(path: &Path, text: &str) -> Result<BTreeMap<String, String>, ConfigError> {
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| ConfigError::Syntax {
            file: path.to_path_buf(),
            reason: e.message().to_string(),
        })?;
    let mut out = BTreeMap::new();
    let unknown = |key: String| ConfigError::UnknownKey {
        file: path.to_path_buf(),
        key,
    };
    for (name, value) in table {
        if let toml::Value::Table(section) = value {
            if !KEYS.iter().any(|k| k.section == Some(name.as_str())) {
                return Err(unknown(format!("[{name}]")));
            }
            for (key, value) in section {
                let dotted = format!("{name}.{key}");
                if let Some((_, _, instead)) = REMOVED
                    .iter()
                    .find(|(s, k, _)| *s == name.as_str() && *k == key.as_str())
                {
                    return Err(ConfigError::Removed {
                        key: dotted,
                        origin: Origin::File(path.to_path_buf()),
                        instead,
                    });
                }
                if !KEYS.iter().any(|k| k.path() == dotted) {
                    return Err(unknown(dotted));
                }
                out.insert(dotted, scalar_text(&value));
            }
        } else {
            if !KEYS.iter().any(|k| k.section.is_none() && k.name == name) {
                return Err(unknown(name));
            }
            out.insert(name, scalar_text(&value));
        }
    }
    Ok(out)
}

fn scalar_text(value: &toml::Value) -> String {
    match value {
        toml::Value::String(s) => s.clone(),
        toml::Value::Array(items) => items.iter().map(scalar_text).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}
