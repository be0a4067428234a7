//! Service tokens: how another service proves it may publish (or mint
//! stream tokens). A token is a random secret shown once; the database
//! keeps only its SHA-256, so a leaked database leaks no usable token.
//! Secrets are 256 random bits, so a plain hash (no salt, no slow hash)
//! is enough: there is nothing to guess.

use std::fmt;

use base64::Engine as _;
use rand::RngCore;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::store::{ServiceStore, TokenRow};
use crate::inbox::InboxPool;

/// What every service token's secret starts with: easy to recognise in a
/// leak scanner, and never confused with a stream token.
pub const SECRET_PREFIX: &str = "sst_";
/// Longest token name, in bytes.
pub const MAX_NAME_LEN: usize = 64;
/// A token's rate when its creator names none: events per minute.
pub const DEFAULT_RATE_PER_MINUTE: u32 = 60_000;

/// What a service token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenScope {
    /// `POST /api/publish`.
    Publish,
    /// `POST /api/tokens/stream`: mint stream tokens for clients.
    Subscribe,
    /// `GET /api/presence`: any channel's or user's presence.
    Presence,
}

impl TokenScope {
    pub const ALL: [TokenScope; 3] = [
        TokenScope::Publish,
        TokenScope::Subscribe,
        TokenScope::Presence,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TokenScope::Publish => "publish",
            TokenScope::Subscribe => "subscribe",
            TokenScope::Presence => "presence",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text.trim())
    }

    /// `publish,subscribe` (either order, no duplicates needed); at least
    /// one.
    pub fn parse_list(text: &str) -> Result<Vec<TokenScope>, TokenError> {
        let mut scopes = Vec::new();
        for word in text.split(',').filter(|w| !w.trim().is_empty()) {
            let scope = TokenScope::parse(word)
                .ok_or_else(|| TokenError::UnknownScope(word.trim().to_string()))?;
            if !scopes.contains(&scope) {
                scopes.push(scope);
            }
        }
        if scopes.is_empty() {
            return Err(TokenError::NoScope);
        }
        scopes.sort();
        Ok(scopes)
    }
}

impl fmt::Display for TokenScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn join(scopes: &[TokenScope]) -> String {
    scopes
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

/// A caller that presented a valid, unrevoked service token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceToken {
    pub name: String,
    pub scopes: Vec<TokenScope>,
    pub rate_per_minute: u32,
}

impl ServiceToken {
    pub fn may(&self, scope: TokenScope) -> bool {
        self.scopes.contains(&scope)
    }
}

/// A token as `token list` shows it (never its secret, which is not kept).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenInfo {
    pub name: String,
    pub scopes: Vec<TokenScope>,
    pub rate_per_minute: u32,
    /// Unix milliseconds.
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

/// A token's secret, shown once at creation. Its `Debug` hides it.
pub struct Secret(String);

impl Secret {
    fn random() -> Self {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        Secret(format!(
            "{SECRET_PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
        ))
    }

    /// The secret itself: give it to the service, then forget it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(…)")
    }
}

/// The stored form of a secret.
pub(crate) fn hash(secret: &str) -> String {
    let digest = Sha256::digest(secret.as_bytes());
    let mut out = String::with_capacity(64);
    for byte in digest {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

/// Why a token operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("a token name is 1 to {MAX_NAME_LEN} bytes of ASCII letters, digits, '-', '_' and '.'")]
    BadName,
    #[error("unknown scope {0:?}: the scopes are publish, subscribe and presence")]
    UnknownScope(String),
    #[error("a token needs at least one scope (publish, subscribe, presence)")]
    NoScope,
    #[error("the rate must be at least 1 event per minute")]
    BadRate,
    #[error("a token named {0:?} exists already; revoke it first")]
    NameTaken(String),
    #[error("there is no unrevoked token named {0:?}")]
    NoSuchToken(String),
    #[error("the token store failed: {0}")]
    Store(String),
}

impl From<sqlx::Error> for TokenError {
    fn from(error: sqlx::Error) -> Self {
        TokenError::Store(error.to_string())
    }
}

fn check_name(name: &str) -> Result<(), TokenError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok { Ok(()) } else { Err(TokenError::BadName) }
}

fn info(row: TokenRow) -> TokenInfo {
    TokenInfo {
        scopes: TokenScope::parse_list(&row.scopes).unwrap_or_default(),
        rate_per_minute: u32::try_from(row.rate_per_minute).unwrap_or(u32::MAX),
        name: row.name,
        created_at: row.created_at,
        revoked_at: row.revoked_at,
    }
}

/// The service tokens of one database: what `sse_notify token …` and the
/// publish API use. Cheap to clone.
#[derive(Clone, Debug)]
pub struct ServiceTokens {
    store: ServiceStore,
}

impl ServiceTokens {
    /// On the database of `pool` (its tables made by
    /// [`crate::inbox::schema::migrate`]).
    pub fn new(pool: impl Into<InboxPool>) -> Self {
        ServiceTokens {
            store: ServiceStore::new(pool.into()),
        }
    }

    /// Creates a token; its secret is in the answer and nowhere else.
    pub async fn create(
        &self,
        name: &str,
        scopes: &[TokenScope],
        rate_per_minute: u32,
    ) -> Result<Secret, TokenError> {
        check_name(name)?;
        if scopes.is_empty() {
            return Err(TokenError::NoScope);
        }
        if rate_per_minute == 0 {
            return Err(TokenError::BadRate);
        }
        let mut scopes = scopes.to_vec();
        scopes.sort();
        scopes.dedup();
        let secret = Secret::random();
        let created = self
            .store
            .insert(
                name,
                &hash(secret.expose()),
                &join(&scopes),
                i64::from(rate_per_minute),
                crate::registry::unix_millis_now() as i64,
            )
            .await?;
        if !created {
            return Err(TokenError::NameTaken(name.to_string()));
        }
        Ok(secret)
    }

    /// Every token, revoked ones included, by name.
    pub async fn list(&self) -> Result<Vec<TokenInfo>, TokenError> {
        Ok(self.store.list().await?.into_iter().map(info).collect())
    }

    /// Revokes a token: every process refuses it from its next request on
    /// (each request reads the table).
    pub async fn revoke(&self, name: &str) -> Result<(), TokenError> {
        let now = crate::registry::unix_millis_now() as i64;
        if self.store.revoke(name, now).await? {
            Ok(())
        } else {
            Err(TokenError::NoSuchToken(name.to_string()))
        }
    }

    /// The unrevoked token `secret` belongs to, if any.
    pub async fn authenticate(&self, secret: &str) -> Result<Option<ServiceToken>, TokenError> {
        if !secret.starts_with(SECRET_PREFIX) {
            return Ok(None);
        }
        let row = self.store.find(&hash(secret)).await?;
        Ok(row.map(info).map(|info| ServiceToken {
            name: info.name,
            scopes: info.scopes,
            rate_per_minute: info.rate_per_minute,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse() {
        assert_eq!(
            TokenScope::parse_list("subscribe, publish,publish"),
            Ok(vec![TokenScope::Publish, TokenScope::Subscribe])
        );
        assert_eq!(TokenScope::parse_list(""), Err(TokenError::NoScope));
        assert!(matches!(
            TokenScope::parse_list("publish,admin"),
            Err(TokenError::UnknownScope(s)) if s == "admin"
        ));
    }

    #[test]
    fn secrets_are_random_prefixed_and_hashed_hex() {
        let (a, b) = (Secret::random(), Secret::random());
        assert_ne!(a.expose(), b.expose());
        assert!(a.expose().starts_with(SECRET_PREFIX));
        assert_eq!(a.expose().len(), SECRET_PREFIX.len() + 43);
        assert_eq!(format!("{a:?}"), "Secret(…)");
        let h = hash(a.expose());
        assert_eq!(h.len(), 64);
        assert_ne!(h, hash(b.expose()));
        assert_eq!(
            hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name("billing-service.v2").is_ok());
        for bad in ["", "a b", "ünï", &"x".repeat(65)] {
            assert_eq!(check_name(bad), Err(TokenError::BadName), "{bad}");
        }
    }
}
