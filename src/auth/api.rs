//! Sign up, sign in, sign out, and who am I: server functions at fixed
//! paths, so the pages' forms and plain HTTP clients use the same code.
//! They take form fields (`username`, `password`, optional `next`).
//!
//! Statuses: 400 invalid username/password, 401 wrong credentials, 409
//! username taken, 429 too many attempts (from one address, or for one
//! username from one address); body `{"error", "message"}`. Failed
//! sign-ins for one username from everywhere only slow it down.

use leptos::prelude::*;

use super::CurrentUser;
use crate::error::AppError;

#[server(prefix = "/api", endpoint = "auth/signup")]
pub async fn signup(
    username: String,
    password: String,
    next: Option<String>,
) -> Result<CurrentUser, AppError> {
    server::signup(username, password, next).await
}

#[server(prefix = "/api", endpoint = "auth/login")]
pub async fn login(
    username: String,
    password: String,
    next: Option<String>,
) -> Result<CurrentUser, AppError> {
    server::login(username, password, next).await
}

#[server(prefix = "/api", endpoint = "auth/logout")]
pub async fn logout() -> Result<(), AppError> {
    server::logout().await
}

/// The signed-in user, or `None`.
#[server(prefix = "/api", endpoint = "auth/me")]
pub async fn me() -> Result<Option<CurrentUser>, AppError> {
    Ok(server::current_user())
}

#[cfg(feature = "ssr")]
pub(crate) mod server {
    use tower_sessions::Session;

    use super::super::credentials::{check_password, check_username};
    use super::super::rate_limit::address_key;
    use super::super::state::{KEY_HANDLE, KEY_SIGNED_IN_AT, KEY_USER_ID, KEY_USERNAME};
    use super::super::{Auth, CurrentUser, password, safe_next};
    use crate::error::{AppError, ErrorKind};
    use crate::sse::{Notifier, RemoteAddr, SessionId, Target};
    use crate::store::users::{CreateUserError, Role, UserRecord};
    use leptos::prelude::*;

    /// The user the auth middleware found for this request.
    pub(crate) fn current_user() -> Option<CurrentUser> {
        use_context::<axum::http::request::Parts>()
            .and_then(|parts| parts.extensions.get::<CurrentUser>().cloned())
    }

    pub(crate) fn require_user() -> Result<CurrentUser, AppError> {
        current_user().ok_or_else(|| {
            AppError::new(
                ErrorKind::Unauthenticated,
                "unauthenticated",
                "Sign in first.",
            )
        })
    }

    async fn context() -> Result<(Auth, Session), AppError> {
        let auth = use_context::<Auth>()
            .ok_or_else(|| AppError::internal("auth is not in the server's context"))?;
        let session = leptos_axum::extract::<Session>()
            .await
            .map_err(|e| AppError::internal(format!("no session layer: {e}")))?;
        Ok((auth, session))
    }

    /// The client's address as the server determined it (see
    /// `server::remote_addr`): behind a trusted proxy, the forwarded one;
    /// as the rate limits count it (IPv6 by /64).
    fn remote_address() -> String {
        use_context::<axum::http::request::Parts>()
            .and_then(|p| p.extensions.get::<RemoteAddr>().copied())
            .map_or_else(
                || "unknown".to_string(),
                |RemoteAddr(addr)| address_key(addr),
            )
    }

    fn too_many(wait: std::time::Duration) -> AppError {
        AppError::new(
            ErrorKind::TooManyRequests,
            "too_many_attempts",
            "Too many sign-in attempts. Wait a few minutes and try again.",
        )
        .retry_after(wait)
    }

    /// Ends the streams of the sign-in with this public handle, if any.
    fn end_streams_of(handle: Option<String>) {
        if let (Some(handle), Some(notifier)) = (handle, use_context::<Notifier>()) {
            notifier.disconnect(&Target::session(SessionId::new(handle)));
        }
    }

    /// Starts a signed-in session: a new session id (so an id planted
    /// before sign-in is worthless) and a new public handle. Streams of a
    /// sign-in this one replaces end now, as at sign-out: they carry the
    /// previous identity, and tabs sharing one would show it.
    async fn sign_in(session: &Session, user: &UserRecord) -> Result<(), AppError> {
        let failed =
            |e: tower_sessions::session::Error| AppError::internal(format!("session: {e}"));
        let previous: Option<String> = session.get(KEY_HANDLE).await.ok().flatten();
        session.cycle_id().await.map_err(failed)?;
        session
            .insert(KEY_USER_ID, &user.id)
            .await
            .map_err(failed)?;
        session
            .insert(KEY_USERNAME, &user.username)
            .await
            .map_err(failed)?;
        session
            .insert(KEY_HANDLE, uuid::Uuid::new_v4().to_string())
            .await
            .map_err(failed)?;
        session
            .insert(KEY_SIGNED_IN_AT, crate::sse::unix_millis_now())
            .await
            .map_err(failed)?;
        end_streams_of(previous);
        Ok(())
    }

    fn finish(user: UserRecord, next: Option<String>) -> CurrentUser {
        leptos_axum::redirect(&safe_next(next.as_deref()));
        CurrentUser {
            is_admin: user.role == Role::Admin,
            id: user.id,
            username: user.username,
        }
    }

    pub(super) async fn signup(
        username: String,
        password: String,
        next: Option<String>,
    ) -> Result<CurrentUser, AppError> {
        let (auth, session) = context().await?;
        let username = username.trim().to_string();
        check_username(&username).map_err(|m| AppError::bad_request("invalid_username", m))?;
        check_password(&password).map_err(|m| AppError::bad_request("invalid_password", m))?;
        auth.per_ip().attempt(&remote_address()).map_err(too_many)?;
        let hash = password::hash(password).await.map_err(AppError::internal)?;
        let user = match auth.db().create_user(&username, &hash).await {
            Ok(user) => user,
            Err(CreateUserError::Taken) => {
                return Err(AppError::new(
                    ErrorKind::Conflict,
                    "username_taken",
                    "That username is taken. Choose another one.",
                ));
            }
            Err(CreateUserError::Store(e)) => return Err(AppError::internal(e.to_string())),
        };
        tracing::info!(user = %user.id, username = ?user.username, "account created");
        // Broadcasts sent before the account existed are not its news.
        if let Some(notifier) = use_context::<Notifier>()
            && let Ok(inbox) = notifier.inbox()
            && let Err(e) = inbox
                .open_account(&crate::sse::UserId::new(user.id.clone()))
                .await
        {
            tracing::warn!(user = %user.id, error = %e, "cannot start the account's inbox");
        }
        sign_in(&session, &user).await?;
        Ok(finish(user, next))
    }

    pub(super) async fn login(
        username: String,
        password: String,
        next: Option<String>,
    ) -> Result<CurrentUser, AppError> {
        let (auth, session) = context().await?;
        let username = username.trim().to_string();
        // No account can have a name that fails this, and refusing it here
        // keeps control characters out of the rate limiter and the log.
        check_username(&username).map_err(|m| AppError::bad_request("invalid_username", m))?;
        // Refusals count per address and per (name, address), so guesses
        // from elsewhere never refuse the owner; per name alone, failures
        // only slow every attempt down (throttling, not lockout).
        let address = remote_address();
        let name = username.to_lowercase();
        auth.per_ip().attempt(&address).map_err(too_many)?;
        auth.per_user_address()
            .attempt_or_untracked(&format!("{name} {address}"))
            .map_err(too_many)?;
        if let Some(delay) = auth.slowdown().delay_for(&name) {
            tokio::time::sleep(delay).await;
        }
        let user = auth
            .db()
            .user_by_username(&username)
            .await
            .map_err(|e| AppError::internal(e.to_string()))?;
        let stored = user.as_ref().map(|u| u.password_hash.clone());
        let valid = password::verify(password, stored).await;
        let user = match user {
            Some(user) if valid => user,
            _ => {
                auth.slowdown().failed(&name);
                tracing::info!(?username, "sign-in refused");
                return Err(AppError::new(
                    ErrorKind::Unauthenticated,
                    "invalid_credentials",
                    "Wrong username or password.",
                ));
            }
        };
        sign_in(&session, &user).await?;
        tracing::info!(user = %user.id, username = ?user.username, "signed in");
        Ok(finish(user, next))
    }

    pub(super) async fn logout() -> Result<(), AppError> {
        let (_, session) = context().await?;
        let handle: Option<String> = session.get(KEY_HANDLE).await.ok().flatten();
        session
            .flush()
            .await
            .map_err(|e| AppError::internal(format!("session: {e}")))?;
        // Streams opened by this sign-in end now, not at their next write.
        end_streams_of(handle);
        leptos_axum::redirect("/login");
        Ok(())
    }
}
