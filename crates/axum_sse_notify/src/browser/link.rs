//! This tab's part in sharing a stream: its `BroadcastChannel` to the
//! other tabs, its place at the Web Lock, and when the leader was last
//! heard (browser only). State and the few acts that need nothing else:
//! the stream ([`super::event_source`]), the election ([`super::lock`])
//! and the conversation ([`super::tabs`]) all build on it.

use std::time::Duration;

use js_sys::Function;
use leptos::prelude::{IntervalHandle, set_timeout};
use wasm_bindgen::JsValue;
use wasm_bindgen::closure::Closure;
use web_sys::{AbortController, BroadcastChannel, MessageEvent};

use super::tab_talk::{Message, Watch};

/// How long a leader whose stream is over for good keeps the lock after
/// saying so: long enough for the other tabs to hear it and close too,
/// rather than one of them taking the lock and trying again.
pub const FINAL_GRACE: Duration = Duration::from_millis(500);

/// This tab's part in sharing: its channel and its place at the lock.
pub struct Link {
    pub(super) channel: BroadcastChannel,
    /// Kept alive while the channel may call it.
    pub(super) _on_message: Closure<dyn FnMut(MessageEvent)>,
    /// Beats while leading; watches the leader while following.
    pub(super) ticker: Option<IntervalHandle>,
    pub(super) lock: Place,
    /// When the leader was last heard from.
    pub(super) watch: Watch,
}

impl Link {
    /// Sends a message to the other tabs.
    pub fn post(&self, message: &Message) {
        let parts: js_sys::Array = message
            .to_parts()
            .iter()
            .map(|part| JsValue::from_str(part))
            .collect();
        if let Err(e) = self.channel.post_message(&parts) {
            leptos::logging::warn!("cannot reach the other tabs: {e:?}");
        }
    }

    /// Closes the channel and stops the ticker; what is left is the place
    /// at the lock.
    pub fn stop(mut self) -> Place {
        self.channel.set_onmessage(None);
        self.channel.close();
        if let Some(ticker) = self.ticker.take() {
            ticker.clear();
        }
        self.lock
    }

    /// Leaves the tabs. A leader that hands over says so and gives the
    /// lock back at once (the next tab in line takes it); one whose stream
    /// is over for good has said so (`Closed`) and keeps the lock for
    /// `grace`, so that the others close rather than take it. A tab still
    /// waiting withdraws.
    pub fn leave(self, say_leaving: bool, grace: Option<Duration>) {
        if say_leaving {
            self.post(&Message::Leaving);
        }
        self.stop().give_back(grace);
    }
}

/// This tab's place at the lock.
#[derive(Default)]
pub struct Place {
    /// Which request is current; older ones settle unheeded.
    pub(super) generation: u32,
    /// Withdraws the current request while it waits.
    pub(super) abort: Option<AbortController>,
    /// Resolving it gives the lock back (set while this tab holds it).
    pub(super) release: Option<Function>,
}

impl Place {
    /// Gives the lock back (after `grace`, if any) or withdraws the
    /// request still waiting.
    pub fn give_back(self, grace: Option<Duration>) {
        match (self.release, grace) {
            (Some(release), Some(grace)) => set_timeout(
                move || {
                    let _ = release.call0(&JsValue::UNDEFINED);
                },
                grace,
            ),
            (Some(release), None) => {
                let _ = release.call0(&JsValue::UNDEFINED);
            }
            (None, _) => {
                if let Some(abort) = self.abort {
                    abort.abort();
                }
            }
        }
    }
}
