//! The unread count, shared by the islands of one page: the header's
//! badge shows it, `/home`'s inbox list keeps it current from the stream.
//! One value per page (the browser runs islands on one thread), so the
//! page needs no second event stream for its badge.

use leptos::prelude::*;

use crate::inbox_api::unread_count;

/// The page's unread count; `None` until known. Reference-counted rather
/// than owned by one island, so no island's cleanup can dispose of it.
pub fn unread() -> ArcRwSignal<Option<u64>> {
    #[cfg(feature = "hydrate")]
    {
        thread_local! {
            static UNREAD: ArcRwSignal<Option<u64>> = ArcRwSignal::new(None);
        }
        UNREAD.with(Clone::clone)
    }
    #[cfg(not(feature = "hydrate"))]
    {
        // Nothing is shared on the server: the badge renders empty there.
        ArcRwSignal::new(None)
    }
}

/// The header's unread badge: asks the server for the count once, then
/// follows whatever the page's stream reports.
#[island]
pub fn UnreadBadge() -> impl IntoView {
    let count = RwSignal::from(unread());
    #[cfg(feature = "hydrate")]
    leptos::task::spawn_local(async move {
        if count.get_untracked().is_none()
            && let Ok(summary) = unread_count().await
            && count.get_untracked().is_none()
        {
            count.set(Some(summary.unread));
        }
    });
    #[cfg(not(feature = "hydrate"))]
    let _ = unread_count;
    let label = move || match count.get() {
        Some(1) => "1 unread notification".to_string(),
        Some(n) => format!("{n} unread notifications"),
        None => "Unread notifications".to_string(),
    };
    view! {
        <a
            href="/home"
            class=move || match count.get() {
                Some(0) | None => "unread-badge quiet",
                Some(_) => "unread-badge",
            }
            aria-label=label
            title=label
            data-testid="unread-badge"
        >
            {move || count.get().map(|n| n.to_string()).unwrap_or_default()}
        </a>
    }
}
