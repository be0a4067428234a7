//! `/home`'s Rooms box: join or leave a demo room. The demo's channel
//! policy lets a stream open on `room:<name>` only for its members, so
//! joining here is what makes that channel (and its presence) yours.

use leptos::prelude::*;

use crate::error::AppError;
use crate::rooms::{JoinRoom, LeaveRoom, my_rooms};

#[component]
pub fn Rooms() -> impl IntoView {
    let rooms = RwSignal::new(Vec::<String>::new());
    let (name, set_name) = signal(String::new());
    let (error, set_error) = signal(None::<String>);
    #[cfg(feature = "hydrate")]
    leptos::task::spawn_local(async move {
        if let Ok(list) = my_rooms().await {
            rooms.set(list);
        }
    });
    #[cfg(not(feature = "hydrate"))]
    let _ = my_rooms;
    let join = ServerAction::<JoinRoom>::new();
    let leave = ServerAction::<LeaveRoom>::new();
    let apply = move |outcome: Option<Result<Vec<String>, AppError>>| match outcome {
        Some(Ok(list)) => {
            rooms.set(list);
            set_error.set(None);
        }
        Some(Err(e)) => set_error.set(Some(e.message)),
        None => {}
    };
    Effect::new(move |_| apply(join.value().get()));
    Effect::new(move |_| apply(leave.value().get()));
    let on_join = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        join.dispatch(JoinRoom {
            room: name.get_untracked().trim().to_string(),
        });
        set_name.set(String::new());
    };
    view! {
        <section class="card rooms" aria-labelledby="rooms-title">
            <h2 id="rooms-title">"Rooms"</h2>
            <p class="muted">
                "Streams may join " <code>"room:<name>"</code>
                " only for the rooms you are in; " <code>"page:*"</code> " is open to all."
            </p>
            <form class="stack" on:submit=on_join aria-label="Join a room">
                <label for="room-name">"Room"</label>
                <input
                    id="room-name"
                    type="text"
                    name="room"
                    required
                    maxlength="64"
                    autocomplete="off"
                    prop:value=name
                    on:input=move |ev| set_name.set(event_target_value(&ev))
                />
                <div class="buttons">
                    <button type="submit" disabled=move || join.pending().get()>"Join"</button>
                </div>
            </form>
            <p class="form-error" role="alert">{move || error.get()}</p>
            <ul class="rooms-list" aria-label="Your rooms" data-testid="rooms">
                <For each=move || rooms.get() key=Clone::clone let:room>
                    <li>
                        <span class="room-name">{room.clone()}</span>
                        " "
                        <button
                            type="button"
                            class="secondary"
                            aria-label=format!("Leave {room}")
                            on:click=move |_| {
                                leave.dispatch(LeaveRoom { room: room.clone() });
                            }
                        >
                            "Leave"
                        </button>
                    </li>
                </For>
            </ul>
        </section>
    }
}
