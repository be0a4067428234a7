//! Stream tokens: short-lived signed tokens that open an event stream
//! without the host's session (a mobile app, a CLI, another site).
//!
//! A JWT (RFC 7519) signed with HS256, through `jsonwebtoken`: every
//! language has a JWT library, so a service in any language can mint one
//! itself with the shared key, and `jsonwebtoken` is the most used and
//! kept Rust implementation. PASETO would rule out algorithm confusion by
//! design, but has far fewer libraries; here the verifier accepts HS256
//! only, with its issuer, audience and expiry required, which closes the
//! same doors.
//!
//! Claims: `sub` (the user id), `name` (shown in listings), `channels`
//! (what the holder may join, `room:blue` or `page:*`), `iat`, `exp`,
//! `jti` (the stream's session: a resume claims its client id only with
//! the same token), `iss` = [`ISSUER`], `aud` = [`AUDIENCE`].

use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::channel::ChannelGrant;
use crate::target::{Identity, SessionId, UserId};

pub const ISSUER: &str = "axum_sse_notify";
pub const AUDIENCE: &str = "sse-stream";
/// A configured key's least length: HS256 is only as strong as its key.
pub const MIN_KEY_BYTES: usize = 32;
/// Longest user id or name a token may carry, in bytes.
pub const MAX_CLAIM_LEN: usize = 256;

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    iss: String,
    aud: String,
    sub: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(default)]
    channels: ChannelGrant,
    iat: u64,
    exp: u64,
    jti: String,
}

/// What a verified stream token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamClaims {
    pub user: UserId,
    pub username: String,
    pub channels: ChannelGrant,
    /// Unix seconds.
    pub expires_at: u64,
    pub token_id: String,
}

impl StreamClaims {
    /// The stream's identity: the token's user, a session of its own
    /// (`token:<jti>`), no server-set tags (roles come from the host's
    /// accounts, never from a token), and no sign-in time (a resume
    /// replays what the user's streams could see, as with a cookie).
    pub fn identity(&self) -> Identity {
        Identity {
            user: self.user.clone(),
            username: self.username.clone(),
            session: SessionId::new(format!("token:{}", self.token_id)),
            tags: Vec::new(),
            since: None,
        }
    }
}

/// Why a stream token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamTokenError {
    #[error("the stream token has expired")]
    Expired,
    #[error("the stream token is not valid: {0}")]
    Invalid(String),
    #[error("a stream token lives 1 s to {max} s, not {asked} s")]
    BadTtl { asked: u64, max: u64 },
    #[error("{0} must be 1 to {MAX_CLAIM_LEN} bytes without control characters")]
    BadClaim(&'static str),
    #[error("the stream token key must be at least {MIN_KEY_BYTES} bytes")]
    ShortKey,
}

/// What to put in a new stream token.
#[derive(Debug, Clone)]
pub struct StreamTokenRequest {
    pub user: UserId,
    /// Shown in listings; the user id when absent.
    pub name: Option<String>,
    pub channels: ChannelGrant,
    pub ttl: Duration,
}

/// A new stream token and when it stops working.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MintedToken {
    pub token: String,
    /// Unix seconds.
    pub expires_at: u64,
}

/// Signs and verifies stream tokens with one key.
#[derive(Clone)]
pub struct StreamKey {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    max_ttl: Duration,
}

impl std::fmt::Debug for StreamKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StreamKey(…)")
    }
}

fn claim_ok(text: &str) -> bool {
    !text.is_empty() && text.len() <= MAX_CLAIM_LEN && !text.chars().any(char::is_control)
}

impl StreamKey {
    /// A key of at least [`MIN_KEY_BYTES`]; tokens live `max_ttl` at most.
    pub fn new(secret: &[u8], max_ttl: Duration) -> Result<Self, StreamTokenError> {
        if secret.len() < MIN_KEY_BYTES {
            return Err(StreamTokenError::ShortKey);
        }
        // The one provider this crate builds jsonwebtoken with; an app
        // that installed its own first keeps it.
        let _ = jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.install_default();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_audience(&[AUDIENCE]);
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "sub", "aud", "iss"]);
        // Expiry is exact: a test (and a client) can rely on it.
        validation.leeway = 0;
        Ok(StreamKey {
            encoding: EncodingKey::from_secret(secret)
                .map_err(|e| StreamTokenError::Invalid(e.to_string()))?,
            decoding: DecodingKey::from_secret(secret)
                .map_err(|e| StreamTokenError::Invalid(e.to_string()))?,
            validation,
            max_ttl,
        })
    }

    pub fn max_ttl(&self) -> Duration {
        self.max_ttl
    }

    /// Signs a token for `request`.
    pub fn mint(&self, request: &StreamTokenRequest) -> Result<MintedToken, StreamTokenError> {
        let ttl = request.ttl.as_secs();
        if ttl == 0 || request.ttl > self.max_ttl {
            return Err(StreamTokenError::BadTtl {
                asked: ttl,
                max: self.max_ttl.as_secs(),
            });
        }
        if !claim_ok(request.user.as_str()) {
            return Err(StreamTokenError::BadClaim("user"));
        }
        if request.name.as_deref().is_some_and(|n| !claim_ok(n)) {
            return Err(StreamTokenError::BadClaim("name"));
        }
        let now = crate::registry::unix_millis_now() / 1000;
        let claims = Claims {
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
            sub: request.user.as_str().to_string(),
            name: request.name.clone(),
            channels: request.channels.clone(),
            iat: now,
            exp: now + ttl,
            jti: uuid::Uuid::new_v4().simple().to_string(),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| StreamTokenError::Invalid(e.to_string()))?;
        Ok(MintedToken {
            token,
            expires_at: claims.exp,
        })
    }

    /// The claims of a token this key signed, if it is still valid.
    pub fn verify(&self, token: &str) -> Result<StreamClaims, StreamTokenError> {
        use jsonwebtoken::errors::ErrorKind;
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => StreamTokenError::Expired,
                _ => StreamTokenError::Invalid(e.to_string()),
            })?;
        let claims = data.claims;
        // The stream ends at `exp` exactly (ms); so does acceptance (the
        // library's check is in whole seconds).
        if claims.exp.saturating_mul(1000) <= crate::registry::unix_millis_now() {
            return Err(StreamTokenError::Expired);
        }
        if !claim_ok(&claims.sub) || claims.name.as_deref().is_some_and(|n| !claim_ok(n)) {
            return Err(StreamTokenError::Invalid("bad sub or name".into()));
        }
        if !claim_ok(&claims.jti) {
            return Err(StreamTokenError::Invalid("bad jti".into()));
        }
        Ok(StreamClaims {
            username: claims.name.unwrap_or_else(|| claims.sub.clone()),
            user: UserId::new(claims.sub),
            channels: claims.channels,
            expires_at: claims.exp,
            token_id: claims.jti,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::ChannelPattern;

    fn key(secret: &[u8]) -> StreamKey {
        StreamKey::new(secret, Duration::from_secs(3600)).unwrap()
    }

    fn request(ttl: u64) -> StreamTokenRequest {
        StreamTokenRequest {
            user: UserId::new("ann"),
            name: Some("Ann".into()),
            channels: ChannelGrant(vec![ChannelPattern::parse("room:blue").unwrap()]),
            ttl: Duration::from_secs(ttl),
        }
    }

    #[test]
    fn a_minted_token_verifies_with_its_key_only() {
        let k = key(&[7; 32]);
        let minted = k.mint(&request(60)).unwrap();
        let claims = k.verify(&minted.token).unwrap();
        assert_eq!(claims.user, UserId::new("ann"));
        assert_eq!(claims.username, "Ann");
        assert_eq!(claims.expires_at, minted.expires_at);
        assert!(claims.identity().session.as_str().starts_with("token:"));
        assert!(matches!(
            key(&[8; 32]).verify(&minted.token),
            Err(StreamTokenError::Invalid(_))
        ));
        // A changed payload breaks the signature.
        let mut parts: Vec<String> = minted.token.split('.').map(String::from).collect();
        parts[1] = parts[1].replace('a', "b");
        assert!(k.verify(&parts.join(".")).is_err());
        assert!(k.verify("not.a.token").is_err());
        assert!(k.verify("").is_err());
    }

    #[test]
    fn unsigned_and_other_algorithms_are_refused() {
        let k = key(&[7; 32]);
        let minted = k.mint(&request(60)).unwrap();
        let payload = minted.token.split('.').nth(1).unwrap().to_string();
        use base64::Engine as _;
        let none = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(r#"{"alg":"none","typ":"JWT"}"#);
        assert!(k.verify(&format!("{none}.{payload}.")).is_err());
        let hs512 = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(r#"{"alg":"HS512","typ":"JWT"}"#);
        assert!(k.verify(&format!("{hs512}.{payload}.AAAA")).is_err());
    }

    #[test]
    fn ttl_key_and_claims_are_bounded() {
        let k = key(&[7; 32]);
        assert!(matches!(
            k.mint(&request(0)),
            Err(StreamTokenError::BadTtl { .. })
        ));
        assert!(matches!(
            k.mint(&request(3601)),
            Err(StreamTokenError::BadTtl { .. })
        ));
        let mut bad = request(60);
        bad.user = UserId::new("a\nb");
        assert_eq!(k.mint(&bad), Err(StreamTokenError::BadClaim("user")));
        assert!(matches!(
            StreamKey::new(&[1; 31], Duration::from_secs(1)),
            Err(StreamTokenError::ShortKey)
        ));
    }
}
