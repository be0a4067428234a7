//! `TrackConnections`: live connection figures, refreshed every two
//! seconds through the `live_stats` server function.
//!
//! Polling rather than pushing: its cost is one small request per viewer
//! every 2 s, whatever the churn; a push on every connect/disconnect would
//! cost one event per viewer per change, and per-role filtering of the
//! figures would need one variant per audience.

use std::time::Duration;

use leptos::prelude::*;

use super::clock;
use crate::demo::{ConnectionStats, live_stats};

/// How often the figures are refreshed.
pub const REFRESH: Duration = Duration::from_secs(2);

/// An island: it can stand in any server-rendered page on its own.
#[island]
pub fn TrackConnections() -> impl IntoView {
    let (tick, set_tick) = signal(0u32);
    let stats = Resource::new(move || tick.get(), |_| live_stats());

    #[cfg(feature = "hydrate")]
    {
        let handle = set_interval_with_handle(move || set_tick.update(|t| *t += 1), REFRESH).ok();
        let handle = send_wrapper::SendWrapper::new(handle);
        on_cleanup(move || {
            if let Some(handle) = handle.take() {
                handle.clear();
            }
        });
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = set_tick;

    view! {
        <section class="card track-connections" aria-labelledby="track-connections-title">
            <h2 id="track-connections-title">"Connections"</h2>
            <Transition fallback=|| view! { <p class="muted">"Loading…"</p> }>
                {move || {
                    // Taken while the owner is alive (see `app::Account`).
                    let stats = stats.into_future();
                    Suspend::new(async move {
                        match stats.await {
                            Ok(stats) => view! { <Figures stats /> }.into_any(),
                            Err(e) => view! { <p class="form-error">{e.message}</p> }.into_any(),
                        }
                    })
                }}
            </Transition>
        </section>
    }
}

#[component]
fn Figures(stats: ConnectionStats) -> impl IntoView {
    // Whole seconds, without float formatting (which costs the bundle ~14 KB).
    let average = format!("{} s", stats.average_connection_seconds.round() as u64);
    let last = stats
        .last_event_at
        .map_or_else(|| "never".to_string(), clock);
    let per_user = stats.clients_per_user.clone();
    let instances = stats.instances.clone();
    let several = instances.len() > 1;
    view! {
        <dl class="figures">
            <div>
                <dt>"Total clients"</dt>
                <dd data-testid="total-clients">{stats.total_clients}</dd>
            </div>
            <div>
                <dt>"Average connection"</dt>
                <dd>{average}</dd>
            </div>
            <div>
                <dt>"Events sent"</dt>
                <dd data-testid="events-sent">{stats.events_sent}</dd>
            </div>
            <div>
                <dt>"Last event"</dt>
                <dd>{last}</dd>
            </div>
        </dl>
        <Show when=move || several>
            <table class="per-user" data-testid="instances">
                <caption>"Clients per server process"</caption>
                <tbody>
                    {instances
                        .iter()
                        .map(|i| view! {
                            <tr>
                                <td>{i.instance.clone()}</td>
                                <td>{i.clients}</td>
                            </tr>
                        })
                        .collect_view()}
                </tbody>
            </table>
        </Show>
        <Show when=move || !per_user.is_empty()>
            <table class="per-user">
                <caption>"Clients per user"</caption>
                <thead>
                    <tr>
                        <th scope="col">"User"</th>
                        <th scope="col">"Clients"</th>
                    </tr>
                </thead>
                <tbody>
                    {stats
                        .clients_per_user
                        .iter()
                        .map(|(user, n)| view! {
                            <tr>
                                <td>{user.clone()}</td>
                                <td>{*n}</td>
                            </tr>
                        })
                        .collect_view()}
                </tbody>
            </table>
        </Show>
    }
}
