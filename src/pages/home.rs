//! `/home`: the signed-in user's notification page. A placeholder until
//! the SSE layer and accounts land.

use leptos::prelude::*;
use leptos_meta::Title;

#[component]
pub fn HomePage() -> impl IntoView {
    view! {
        <Title text="Home" />
        <section class="card">
            <h1>"Your notifications"</h1>
            <p>"Live notifications will appear here once you are signed in."</p>
        </section>
    }
}
