//! `sse_notify token …`: the operator's commands for service tokens,
//! which other services publish (and mint stream tokens) with.
//!
//! - `token create <name> --scope publish[,subscribe] [--rate <events/min>]`
//!   prints the secret once (stdout); only its hash is stored.
//! - `token list`: every token, revoked ones too (never a secret).
//! - `token revoke <name>`: refused by every server process from its next
//!   request on (each request reads the table).

use crate::config::Config;
use crate::sse::service::token::DEFAULT_RATE_PER_MINUTE;
use crate::sse::{ServiceTokens, TokenScope};
use crate::store::Db;

/// What `sse_notify token` was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenCommand {
    Create {
        name: String,
        scopes: Vec<TokenScope>,
        rate_per_minute: u32,
    },
    List,
    Revoke(String),
}

/// How to call it, for error messages.
pub const USAGE: &str = "usage: sse_notify token create <name> --scope publish[,subscribe] [--rate <events per minute>]\n       sse_notify token list\n       sse_notify token revoke <name>";

impl TokenCommand {
    /// Parses the words after `token`.
    pub fn parse(args: &[String]) -> Result<Self, String> {
        let usage = || USAGE.to_string();
        match args {
            [verb] if verb == "list" => Ok(TokenCommand::List),
            [verb, name] if verb == "revoke" => Ok(TokenCommand::Revoke(name.clone())),
            [verb, name, options @ ..] if verb == "create" => {
                let mut scopes = None;
                let mut rate = DEFAULT_RATE_PER_MINUTE;
                let mut rest = options.iter();
                while let Some(option) = rest.next() {
                    let value = rest.next().ok_or_else(usage)?;
                    match option.as_str() {
                        "--scope" => {
                            scopes = Some(TokenScope::parse_list(value).map_err(|e| e.to_string())?)
                        }
                        "--rate" => {
                            rate =
                                value.parse::<u32>().ok().filter(|r| *r > 0).ok_or(
                                    "--rate is a whole number of events per minute, above 0",
                                )?
                        }
                        _ => return Err(usage()),
                    }
                }
                Ok(TokenCommand::Create {
                    name: name.clone(),
                    scopes: scopes.ok_or("--scope is required (publish, subscribe)")?,
                    rate_per_minute: rate,
                })
            }
            _ => Err(usage()),
        }
    }
}

/// Runs `command` against the database `config` names; returns what to
/// print on stdout, or an error for the operator.
pub async fn run(config: &Config, command: TokenCommand) -> Result<String, String> {
    let db = Db::connect(config.database_url.as_deref(), &config.data_dir)
        .await
        .map_err(|e| e.to_string())?;
    let tokens = ServiceTokens::new(db.pool().clone());
    let result = match command {
        TokenCommand::Create {
            name,
            scopes,
            rate_per_minute,
        } => tokens
            .create(&name, &scopes, rate_per_minute)
            .await
            .map(|secret| {
                let scopes: Vec<&str> = scopes.iter().map(|s| s.as_str()).collect();
                eprintln!(
                    "token {name:?} created (scopes: {}; {rate_per_minute} events per minute). \
                     Its secret follows; it is shown this once and not kept.",
                    scopes.join(",")
                );
                secret.expose().to_string()
            }),
        TokenCommand::List => tokens.list().await.map(|list| {
            if list.is_empty() {
                return "no service tokens".to_string();
            }
            let mut out = String::from("name\tscopes\tevents/min\tcreated\tstate");
            for token in list {
                let scopes: Vec<&str> = token.scopes.iter().map(|s| s.as_str()).collect();
                let state = match token.revoked_at {
                    Some(at) => format!("revoked {}", iso(at)),
                    None => "active".into(),
                };
                out.push_str(&format!(
                    "\n{}\t{}\t{}\t{}\t{state}",
                    token.name,
                    scopes.join(","),
                    token.rate_per_minute,
                    iso(token.created_at)
                ));
            }
            out
        }),
        TokenCommand::Revoke(name) => tokens
            .revoke(&name)
            .await
            .map(|()| format!("token {name:?} revoked")),
    }
    .map_err(|e| e.to_string());
    db.pool().close().await;
    result
}

/// Unix milliseconds as an RFC 3339 time (UTC).
fn iso(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| ms.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<String> {
        text.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn commands_parse() {
        assert_eq!(
            TokenCommand::parse(&words(
                "create billing --scope publish,subscribe --rate 600"
            )),
            Ok(TokenCommand::Create {
                name: "billing".into(),
                scopes: vec![TokenScope::Publish, TokenScope::Subscribe],
                rate_per_minute: 600,
            })
        );
        assert_eq!(
            TokenCommand::parse(&words("create b --scope publish")),
            Ok(TokenCommand::Create {
                name: "b".into(),
                scopes: vec![TokenScope::Publish],
                rate_per_minute: DEFAULT_RATE_PER_MINUTE,
            })
        );
        assert_eq!(TokenCommand::parse(&words("list")), Ok(TokenCommand::List));
        assert_eq!(
            TokenCommand::parse(&words("revoke b")),
            Ok(TokenCommand::Revoke("b".into()))
        );
        for bad in [
            "",
            "create",
            "create b",
            "create b --scope",
            "create b --scope admin",
            "create b --scope publish --rate 0",
            "create b --scope publish --rate x",
            "create b --color red",
            "revoke",
            "list x",
        ] {
            assert!(TokenCommand::parse(&words(bad)).is_err(), "{bad}");
        }
    }
}
