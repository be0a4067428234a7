//! Accounts and sessions: who is on the other end of a request.
//!
//! - [`api`]: the sign-up / sign-in / sign-out server functions
//!   (`POST /api/auth/…`) and `me`, shared with the browser;
//! - [`credentials`]: username and password rules, shared too;
//! - server only: [`password`] (argon2id), [`rate_limit`], [`middleware`]
//!   (session → [`CurrentUser`] and the SSE layer's `Identity`, the
//!   cross-site check, the `/home` guard), [`channels`] (which channels a
//!   stream may join), [`stream_sessions`] (stream connects' few seconds
//!   of memory of who a session is), and [`Auth`], the state they share.

pub mod api;
pub mod credentials;
pub mod session_ui;

#[cfg(feature = "ssr")]
pub mod channels;
#[cfg(feature = "ssr")]
pub mod middleware;
#[cfg(feature = "ssr")]
pub mod password;
#[cfg(feature = "ssr")]
pub mod rate_limit;
#[cfg(feature = "ssr")]
mod shared_count;
#[cfg(feature = "ssr")]
mod state;
#[cfg(feature = "ssr")]
pub mod stream_sessions;

#[cfg(feature = "ssr")]
pub use state::{Auth, AuthConfig, SecureCookie};

use serde::{Deserialize, Serialize};

/// The signed-in user, as pages and server functions see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CurrentUser {
    pub id: String,
    pub username: String,
    pub is_admin: bool,
}

/// Where to go after signing in: only paths on this site are accepted, so
/// a crafted `?next=` cannot send a user elsewhere.
pub fn safe_next(next: Option<&str>) -> String {
    match next.map(str::trim) {
        Some(path)
            if path.starts_with('/')
                && !path.starts_with("//")
                && !path.starts_with("/\\")
                && path.len() <= 512
                && path.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            path.to_string()
        }
        _ => "/home".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn only_same_site_paths_are_followed() {
        assert_eq!(safe_next(Some("/home")), "/home");
        assert_eq!(safe_next(Some("/home?tab=2")), "/home?tab=2");
        for bad in [
            "https://evil.example/",
            "//evil.example/",
            "/\\evil.example",
            "javascript:alert(1)",
            "home",
            "/a b",
            "/x\r\nLocation: http://evil",
            "",
        ] {
            assert_eq!(safe_next(Some(bad)), "/home", "{bad:?}");
        }
        assert_eq!(safe_next(None), "/home");
    }
}
