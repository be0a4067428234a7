//! `/home`: the signed-in user's live notifications (the SSE demo). The
//! server redirects signed-out visitors before rendering; this page does
//! the same after a client-side navigation.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::components::Redirect;

use crate::auth::CurrentUser;
use crate::auth::api::me;
use crate::components::{InboxList, Rooms, TrackConnections};
use crate::demo::{Broadcast, Delivered, Notification, SendTest};
use crate::error::AppError;
use crate::sse::event::RESERVED_EVENT_NAMES;
use crate::sse::{ConnectionState, SseEvent, SseOptions, StreamReset, use_sse};

#[component]
pub fn HomePage() -> impl IntoView {
    // Asked afresh on every visit: right after a sign-in, the header's
    // copy of the user may not have caught up yet.
    let user = Resource::new(|| (), |_| me());
    view! {
        <Title text="Home" />
        <Transition fallback=|| view! { <p class="muted">"Loading…"</p> }>
            {move || {
                // Taken while the owner is alive (see `app::Account`).
                let user = user.into_future();
                Suspend::new(async move {
                    match user.await {
                        Ok(Some(user)) => view! { <SseDemo user /> }.into_any(),
                        _ => view! { <Redirect path="/login?next=/home" /> }.into_any(),
                    }
                })
            }}
        </Transition>
    }
}

/// How many of the last messages `data-last` lists.
const ARRIVALS_KEPT: usize = 100;

/// `/home?tabs=separate`: this tab opens a stream of its own instead of
/// sharing one with the user's other tabs.
fn separate_stream_asked() -> bool {
    #[cfg(feature = "hydrate")]
    {
        web_sys::window()
            .and_then(|w| w.location().search().ok())
            .is_some_and(|q| {
                q.trim_start_matches('?')
                    .split('&')
                    .any(|p| p == "tabs=separate")
            })
    }
    #[cfg(not(feature = "hydrate"))]
    false
}

/// The live demo: connection status, the latest message, a send form and
/// the received notifications. An island: the only part of the page that
/// runs in the browser (`user` travels serialised with it).
/// The status line after an `sse-reset`: what happened, and what may be
/// missing.
fn reset_line(reset: &StreamReset) -> String {
    let what = match reset.reason.as_str() {
        "other_epoch" => "The server restarted",
        _ => "You were disconnected too long",
    };
    match reset.stored {
        Some(stored) if stored.skipped == 0 => format!(
            "{what}: {} stored notification(s) you missed were delivered; \
             live-only messages sent meanwhile may be missing.",
            stored.resumed
        ),
        Some(stored) => format!(
            "{what}: the newest {} stored notification(s) you missed were delivered, \
             {} older ones are in your inbox; live-only messages sent meanwhile may be missing.",
            stored.resumed, stored.skipped
        ),
        None => format!("{what}: notifications sent while you were disconnected may be missing."),
    }
}

#[island]
fn SseDemo(user: CurrentUser) -> impl IntoView {
    // Shared with this user's other tabs of `/home`, unless the address
    // says `?tabs=separate`; the user id as scope keeps another account's
    // tabs (after a sign-in as someone else) off this stream.
    let options = SseOptions::default()
        .tag("page", "home")
        .share_scope(user.id.clone())
        .share_tabs(!separate_stream_asked());
    let sse = use_sse(options);
    let (latest, set_latest) = signal(None::<String>);
    // What this tab received, in arrival order: a count, and the last
    // messages (for checking a shared stream: once each, in order).
    let (arrivals, set_arrivals) = signal((0u64, Vec::<String>::new()));
    sse.on::<Notification>(move |notification| {
        set_arrivals.update(|(count, last)| {
            *count += 1;
            if last.len() == ARRIVALS_KEPT {
                last.remove(0);
            }
            last.push(notification.message.clone());
        });
        set_latest.set(Some(match &notification.from {
            Some(from) => format!("{from}: {}", notification.message),
            None => notification.message.clone(),
        }));
    });
    // The server could not replay everything this page missed while it
    // was disconnected: say what (an app would refetch that part here).
    let (reset, set_reset) = signal(None::<String>);
    sse.add_event_listener(StreamReset::EVENT, move |event| {
        if let Ok(reset) = serde_json::from_str::<StreamReset>(&event.data) {
            set_reset.set(Some(reset_line(&reset)));
        }
    });
    // Events with other names (e.g. an admin's custom broadcast) still
    // show as the latest message; the server's own events do not.
    Effect::new(move |_| {
        if let Some(event) = sse.last_event.get()
            && event.name != Notification::NAME
            && !RESERVED_EVENT_NAMES.contains(&event.name.as_str())
        {
            set_latest.set(Some(format!("{}: {}", event.name, event.data)));
        }
    });

    let send = ServerAction::<SendTest>::new();
    let broadcast = ServerAction::<Broadcast>::new();
    let (to, set_to) = signal(user.username.clone());
    let (message, set_message) = signal(String::new());
    let (error, set_error) = signal(None::<String>);
    let (sent, set_sent) = signal(None::<String>);
    // One outcome line for both buttons: the words of the last answer.
    let report = move |outcome: Option<Result<Delivered, AppError>>, verb: &str| match outcome {
        Some(Ok(done)) => {
            set_error.set(None);
            set_sent.set(Some(format!("{verb} to {} connection(s).", done.delivered)));
        }
        Some(Err(e)) => {
            set_sent.set(None);
            set_error.set(Some(e.message));
        }
        None => {}
    };
    Effect::new(move |_| report(send.value().get(), "Delivered"));
    Effect::new(move |_| report(broadcast.value().get(), "Broadcast"));
    let on_send = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        send.dispatch(SendTest {
            user: to.get_untracked(),
            event: None,
            message: message.get_untracked(),
            client: None,
        });
    };
    let on_broadcast = move |_| {
        broadcast.dispatch(Broadcast {
            event: None,
            message: message.get_untracked(),
            tag: None,
        });
    };

    let status_class = move || match sse.state.get() {
        ConnectionState::Open => "status status-open",
        ConnectionState::Connecting | ConnectionState::Reconnecting { .. } => {
            "status status-waiting"
        }
        ConnectionState::Closed { .. } => "status status-closed",
    };
    let is_admin = user.is_admin;

    view! {
        <div class="home-grid">
            <section class="card demo" aria-labelledby="demo-title">
                <h1 id="demo-title">"Your notifications"</h1>
                <p class="signed-in">
                    "Signed in as " <strong class="username">{user.username.clone()}</strong>
                    {is_admin.then(|| view! { <span class="badge">"admin"</span> })}
                </p>
                <p class=status_class>
                    <span class="dot" aria-hidden="true"></span>
                    "Status: "
                    <span class="status-label" data-testid="status">
                        {move || sse.state.get().label()}
                    </span>
                </p>
                // Ends this tab's part: when it holds the stream for the
                // user's other tabs, one of them takes it over.
                <button
                    type="button"
                    class="secondary"
                    on:click=move |_| sse.close()
                    disabled=move || matches!(sse.state.get(), ConnectionState::Closed { .. })
                >
                    "Disconnect this tab"
                </button>
                <p class="muted" role="status" data-testid="reset">{move || reset.get()}</p>
                <div class="latest-box">
                    <h2>"Latest message"</h2>
                    <p class="latest" aria-live="polite" data-testid="latest">
                        {move || latest.get().unwrap_or_else(|| "No messages yet.".to_string())}
                    </p>
                    <p
                        class="muted arrivals"
                        data-testid="arrivals"
                        data-last=move || {
                            arrivals.with(|(_, last)| serde_json::to_string(last).unwrap_or_default())
                        }
                    >
                        {move || arrivals.with(|(count, _)| format!("{count} received in this tab"))}
                    </p>
                </div>
                <form class="stack send-form" on:submit=on_send aria-label="Send a notification">
                    <label for="send-user">"User"</label>
                    <input
                        id="send-user"
                        type="text"
                        name="user"
                        required
                        autocomplete="off"
                        prop:value=to
                        on:input=move |ev| set_to.set(event_target_value(&ev))
                    />
                    <label for="send-message">"Message"</label>
                    <textarea
                        id="send-message"
                        name="message"
                        rows="3"
                        maxlength="2000"
                        prop:value=message
                        on:input=move |ev| set_message.set(event_target_value(&ev))
                    ></textarea>
                    <div class="buttons">
                        <button type="submit" disabled=move || send.pending().get()>"Send"</button>
                        {is_admin
                            .then(|| {
                                view! {
                                    <button
                                        type="button"
                                        class="secondary"
                                        on:click=on_broadcast
                                        disabled=move || broadcast.pending().get()
                                    >
                                        "Broadcast"
                                    </button>
                                }
                            })}
                    </div>
                    <p class="form-error" role="alert">{move || error.get()}</p>
                    <p class="form-ok" aria-live="polite">{move || sent.get()}</p>
                </form>
            </section>
            <TrackConnections />
            <Rooms />
            <InboxList sse />
        </div>
    }
}
