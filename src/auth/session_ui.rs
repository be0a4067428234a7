//! The signed-in state as the pages see it, shared through context by
//! [`provide_auth`]: the current user (for the header) and the sign-out
//! action. The sign-in and sign-up actions live in their pages, inside the
//! router's routes, where a pre-hydration form error left in the URL is
//! visible to them.

use leptos::prelude::*;

use super::CurrentUser;
use super::api::{Logout, me};
use crate::error::AppError;

#[derive(Clone, Copy)]
pub struct AuthContext {
    pub logout: ServerAction<Logout>,
    /// Re-fetched after sign-out and after [`AuthContext::refresh`].
    pub user: Resource<Result<Option<CurrentUser>, AppError>>,
    version: RwSignal<u32>,
}

impl AuthContext {
    /// Says the signed-in user may have changed (after a sign-in).
    pub fn refresh(&self) {
        self.version.update(|v| *v += 1);
    }
}

/// Creates the context; call once, around the routes.
pub fn provide_auth() -> AuthContext {
    let logout = ServerAction::<Logout>::new();
    let version = RwSignal::new(0);
    let user = Resource::new(move || (version.get(), logout.version().get()), |_| me());
    let context = AuthContext {
        logout,
        user,
        version,
    };
    provide_context(context);
    context
}

/// The context created by [`provide_auth`].
pub fn use_auth() -> AuthContext {
    expect_context::<AuthContext>()
}
