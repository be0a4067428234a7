//! The HTML shell, the router and the page frame shared by every route.

use leptos::prelude::*;
use leptos_meta::{Link, Meta, MetaTags, Stylesheet, Title, provide_meta_context};
use leptos_router::StaticSegment;
use leptos_router::components::{A, Route, Router, Routes};

use crate::pages::{HomePage, LandingPage, NotFoundPage};

/// The document around the app, rendered on the server only.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8" />
                <meta name="viewport" content="width=device-width, initial-scale=1" />
                <AutoReload options=options.clone() />
                <HydrationScripts options />
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
        <Stylesheet id="leptos" href="/pkg/sse_notify.css" />
        <Link rel="icon" type_="image/svg+xml" href="/favicon.svg" />
        <Meta name="description" content="Real-time notifications over Server-Sent Events." />
        <Title formatter=|page: String| format!("{page} · Notify") />
        <Router>
            <header class="site-header">
                <A href="/" attr:class="brand">
                    <span class="brand-mark" aria-hidden="true">"●"</span>
                    " Notify"
                </A>
                <nav aria-label="Main">
                    <A href="/home">"Home"</A>
                </nav>
            </header>
            <main class="site-main">
                <Routes fallback=NotFoundPage>
                    <Route path=StaticSegment("") view=LandingPage />
                    <Route path=StaticSegment("home") view=HomePage />
                </Routes>
            </main>
            <footer class="site-footer">
                <p>"Server-Sent Events for Leptos · Rust, axum, tokio"</p>
            </footer>
        </Router>
    }
}
