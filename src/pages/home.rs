//! `/home`: the signed-in user's notification page. The server redirects
//! signed-out visitors before rendering; this page does the same after a
//! client-side navigation.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::components::Redirect;

use crate::auth::api::me;

#[component]
pub fn HomePage() -> impl IntoView {
    // Asked afresh on every visit: right after a sign-in, the header's
    // copy of the user may not have caught up yet.
    let user = Resource::new(|| (), |_| me());
    view! {
        <Title text="Home" />
        <Transition fallback=|| view! { <p class="muted">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match user.await {
                    Ok(Some(user)) => view! {
                        <section class="card">
                            <h1>"Your notifications"</h1>
                            <p>"Signed in as " <strong class="username">{user.username}</strong></p>
                            <p>"Live notifications will appear here."</p>
                        </section>
                    }
                    .into_any(),
                    _ => view! { <Redirect path="/login?next=/home" /> }.into_any(),
                }
            })}
        </Transition>
    }
}
