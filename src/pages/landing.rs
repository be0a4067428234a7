//! `/`: what the product is, and a live preview that proves the page
//! hydrated.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::components::A;

#[component]
pub fn LandingPage() -> impl IntoView {
    view! {
        <Title text="Real-time notifications" />
        <section class="hero">
            <h1>"Real-time notifications, straight from your Rust backend"</h1>
            <p class="lead">
                "Push a named event with a JSON payload to one user, one session, a tag or "
                "everyone, from any server function, webhook or background job. Browsers "
                "receive it over Server-Sent Events."
            </p>
            <p>
                <A href="/home" attr:class="button">"Open your notifications"</A>
            </p>
        </section>
        <NotificationPreview />
        <section class="features" aria-label="Features">
            <article>
                <h2>"One small API"</h2>
                <p>"Target a user, a session, a set of clients, a tag or everyone."</p>
            </article>
            <article>
                <h2>"Lean connections"</h2>
                <p>"Events are encoded once and shared; each client has a bounded queue."</p>
            </article>
            <article>
                <h2>"No event lost"</h2>
                <p>"Every event has an id, so a reconnecting browser resumes where it stopped."</p>
            </article>
        </section>
    }
}

/// A button that adds a local preview notification: works only once the
/// WASM bundle has taken over the page, which makes it a hydration check.
#[island]
fn NotificationPreview() -> impl IntoView {
    let (count, set_count) = signal(0u32);
    let label = move || match count.get() {
        0 => "No preview notifications yet".to_string(),
        1 => "1 preview notification".to_string(),
        n => format!("{n} preview notifications"),
    };

    view! {
        <section class="card preview" aria-label="Preview">
            <h2>"Try it"</h2>
            <button type="button" on:click=move |_| set_count.update(|n| *n += 1)>
                "Preview a notification"
            </button>
            <p class="preview-count" aria-live="polite">{label}</p>
        </section>
    }
}
