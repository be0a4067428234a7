//! The HTML shell, the router and the page frame shared by every route.

use leptos::prelude::*;
use leptos_meta::{HashedStylesheet, Link, Meta, MetaTags, Title, provide_meta_context};
use leptos_router::components::{A, Route, Router, Routes};
use leptos_router::{SsrMode, StaticSegment};

use crate::auth::session_ui::{AuthContext, provide_auth};
use crate::components::UnreadBadge;
use crate::pages::{HomePage, LandingPage, LoginPage, NotFoundPage, SignupPage};

/// The document around the app, rendered on the server only.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8" />
                <meta name="viewport" content="width=device-width, initial-scale=1" />
                <AutoReload options=options.clone() />
                <HashedStylesheet options=options.clone() id="leptos" />
                <HydrationScripts options islands=true />
                <MetaTags />
            </head>
            <body>
                <App />
            </body>
        </html>
    }
}

#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();

    view! {
        <Link rel="icon" type_="image/svg+xml" href="/favicon.svg" />
        <Meta name="description" content="Real-time notifications over Server-Sent Events." />
        <Title formatter=|page: String| format!("{page} · Notify") />
        <Router>
            <Frame />
        </Router>
    }
}

/// Header, routes and footer. Inside the router, so that the auth actions
/// it creates can read an error a plain (pre-hydration) form post left in
/// the URL.
#[component]
fn Frame() -> impl IntoView {
    let auth = provide_auth();
    view! {
        <header class="site-header">
            <A href="/" attr:class="brand">
                <span class="brand-mark" aria-hidden="true">"●"</span>
                " Notify"
            </A>
            <nav aria-label="Main">
                <A href="/home">"Home"</A>
                <Account auth />
            </nav>
        </header>
        <main class="site-main">
            <Routes fallback=NotFoundPage>
                // In-order streaming: pages arrive complete (account corner,
                // signed-in content), so they work before or without JavaScript.
                <Route path=StaticSegment("") view=LandingPage ssr=SsrMode::InOrder />
                <Route path=StaticSegment("home") view=HomePage ssr=SsrMode::InOrder />
                <Route path=StaticSegment("login") view=LoginPage ssr=SsrMode::InOrder />
                <Route path=StaticSegment("signup") view=SignupPage ssr=SsrMode::InOrder />
            </Routes>
        </main>
        <footer class="site-footer">
            <p>"Server-Sent Events for Leptos · Rust, axum, tokio"</p>
        </footer>
    }
}

/// The header's account corner: sign-in links, or the user and a sign-out
/// button (a form, so it works before hydration too).
///
/// Written to survive a render abandoned half-way (the client went away):
/// the resource's future is taken while the owner is alive, and the links
/// after the `await` are plain anchors, which need no router context (the
/// router still handles clicks on them). Router `<A>`s here panicked when
/// the owner was torn down before the suspense resolved.
#[component]
fn Account(auth: AuthContext) -> impl IntoView {
    use leptos::form::ActionForm;
    view! {
        <Transition fallback=|| ()>
            {move || {
                let user = auth.user.into_future();
                Suspend::new(async move {
                    match user.await {
                        Ok(Some(user)) => view! {
                            <span class="account">
                                <UnreadBadge />
                                <span class="account-name">{user.username}</span>
                                <ActionForm action=auth.logout attr:class="inline-form">
                                    <button type="submit" class="link-button">"Sign out"</button>
                                </ActionForm>
                            </span>
                        }
                        .into_any(),
                        _ => view! {
                            <a href="/login">"Sign in"</a>
                            <a href="/signup">"Sign up"</a>
                        }
                        .into_any(),
                    }
                })
            }}
        </Transition>
    }
}
