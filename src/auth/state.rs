//! [`Auth`]: what the auth middleware and server functions share.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tower_sessions::Session;

use super::CurrentUser;
use super::rate_limit::RateLimiter;
use crate::sse::{Identity, SessionId, Tag, UserId};
use crate::store::Db;

/// Session keys. The session handle is a random id of the sign-in that may
/// be shown (in client listings, logs); the session's own id is the
/// cookie's secret and never leaves the session layer.
pub(crate) const KEY_USER_ID: &str = "user_id";
pub(crate) const KEY_USERNAME: &str = "username";
pub(crate) const KEY_HANDLE: &str = "handle";

/// When the session cookie carries `Secure`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecureCookie {
    /// When the request came over https (per `X-Forwarded-Proto` from the
    /// proxy in front).
    Auto,
    Always,
    Never,
}

/// `[auth]` settings.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// Usernames with the admin role (compared without case).
    pub admins: Vec<String>,
    /// A session unused for this long expires.
    pub session_ttl: Duration,
    pub secure_cookie: SecureCookie,
    /// Sign-in attempts per username per window.
    pub login_attempts_per_user: u32,
    /// Sign-in and sign-up attempts per client address per window.
    pub login_attempts_per_ip: u32,
    pub login_window: Duration,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            admins: Vec::new(),
            session_ttl: Duration::from_secs(7 * 24 * 3600),
            secure_cookie: SecureCookie::Auto,
            login_attempts_per_user: 10,
            login_attempts_per_ip: 50,
            login_window: Duration::from_secs(300),
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
    admins: HashSet<String>,
    per_user: RateLimiter,
    per_ip: RateLimiter,
}

/// Keys tracked by each rate limiter, at most.
const MAX_TRACKED: usize = 100_000;

impl Auth {
    pub fn new(db: Db, config: AuthConfig) -> Self {
        let admins = config.admins.iter().map(|a| a.to_lowercase()).collect();
        Auth {
            inner: Arc::new(Inner {
                per_user: RateLimiter::new(
                    config.login_attempts_per_user,
                    config.login_window,
                    MAX_TRACKED,
                ),
                per_ip: RateLimiter::new(
                    config.login_attempts_per_ip,
                    config.login_window,
                    MAX_TRACKED,
                ),
                db,
                admins,
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

    pub fn is_admin(&self, username: &str) -> bool {
        self.inner.admins.contains(&username.to_lowercase())
    }

    pub(crate) fn per_user(&self) -> &RateLimiter {
        &self.inner.per_user
    }

    pub(crate) fn per_ip(&self) -> &RateLimiter {
        &self.inner.per_ip
    }

    /// The user signed in on `session`, with the SSE identity of this
    /// sign-in; `None` when signed out or the session expired.
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
        let is_admin = self.is_admin(&username);
        let role = if is_admin { "admin" } else { "user" };
        let identity = Identity {
            user: UserId::new(id.as_str()),
            username: username.clone(),
            session: SessionId::new(handle),
            tags: Tag::new("role", role).into_iter().collect(),
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
