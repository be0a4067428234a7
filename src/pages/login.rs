//! `/login` and `/signup`: forms that work before the page hydrates (they
//! post to the server functions; errors come back in the URL) and after
//! (the same actions, without a reload).

use leptos::form::ActionForm;
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::components::A;
use leptos_router::hooks::use_query_map;

use crate::auth::api::{Login, Signup};
use crate::auth::safe_next;
use crate::auth::session_ui::{AuthContext, use_auth};
use crate::error::AppError;

/// The `next` query parameter, made safe.
fn next_path() -> impl Fn() -> String + Copy {
    let query = use_query_map();
    move || safe_next(query.read().get("next").as_deref())
}

/// Tells the header when a sign-in succeeded.
fn refresh_on_success(auth: AuthContext, succeeded: impl Fn() -> bool + 'static) {
    Effect::new(move |_| {
        if succeeded() {
            auth.refresh();
        }
    });
}

fn error_text<T>(value: Option<Result<T, AppError>>) -> Option<String> {
    match value {
        Some(Err(e)) => Some(e.message),
        _ => None,
    }
}

#[component]
pub fn LoginPage() -> impl IntoView {
    let login = ServerAction::<Login>::new();
    refresh_on_success(use_auth(), move || {
        matches!(login.value().get(), Some(Ok(_)))
    });
    let next = next_path();
    let error = move || error_text(login.value().get());
    view! {
        <Title text="Sign in" />
        <section class="card auth-card">
            <h1>"Sign in"</h1>
            <ActionForm action=login attr:class="stack" attr:aria-label="Sign in">
                <input type="hidden" name="next" prop:value=next />
                <label for="login-username">"Username"</label>
                <input
                    id="login-username"
                    type="text"
                    name="username"
                    autocomplete="username"
                    required
                    minlength="3"
                    maxlength="32"
                />
                <label for="login-password">"Password"</label>
                <input
                    id="login-password"
                    type="password"
                    name="password"
                    autocomplete="current-password"
                    required
                />
                <p class="form-error" role="alert">{error}</p>
                <button type="submit">"Sign in"</button>
            </ActionForm>
            <p>"No account yet? " <A href="/signup">"Create one"</A></p>
        </section>
    }
}

#[component]
pub fn SignupPage() -> impl IntoView {
    let signup = ServerAction::<Signup>::new();
    refresh_on_success(use_auth(), move || {
        matches!(signup.value().get(), Some(Ok(_)))
    });
    let next = next_path();
    let error = move || error_text(signup.value().get());
    view! {
        <Title text="Create an account" />
        <section class="card auth-card">
            <h1>"Create an account"</h1>
            <ActionForm action=signup attr:class="stack" attr:aria-label="Create an account">
                <input type="hidden" name="next" prop:value=next />
                <label for="signup-username">"Username"</label>
                <input
                    id="signup-username"
                    type="text"
                    name="username"
                    autocomplete="username"
                    required
                    minlength="3"
                    maxlength="32"
                    pattern="[A-Za-z0-9][A-Za-z0-9_.\\-]*"
                    aria-describedby="signup-username-help"
                />
                <p id="signup-username-help" class="help">
                    "3 to 32 characters: letters, digits, '_', '-' and '.'."
                </p>
                <label for="signup-password">"Password"</label>
                <input
                    id="signup-password"
                    type="password"
                    name="password"
                    autocomplete="new-password"
                    required
                    minlength="8"
                    maxlength="128"
                    aria-describedby="signup-password-help"
                />
                <p id="signup-password-help" class="help">"At least 8 characters."</p>
                <p class="form-error" role="alert">{error}</p>
                <button type="submit">"Sign up"</button>
            </ActionForm>
            <p>"Already have an account? " <A href="/login">"Sign in"</A></p>
        </section>
    }
}
