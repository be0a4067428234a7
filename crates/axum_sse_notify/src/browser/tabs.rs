//! One stream per browser: the tabs of one profile that ask for the same
//! stream elect a leader with the Web Locks API and share its stream over
//! a `BroadcastChannel` (browser only).
//!
//! Every tab asks for the lock named after the stream ([`lock`]); the
//! tab holding it owns the stream and relays every event and state
//! change, and beats every [`BEAT`] ms; the others hold no connection.
//! When the leader closes or crashes the browser gives the lock to the
//! next tab; when it is alive but silent (its page blocked or suspended),
//! a visible tab takes the lock from it.

use std::rc::Rc;
use std::time::Duration;

use js_sys::Reflect;
use leptos::prelude::set_interval_with_handle;
use wasm_bindgen::JsCast;
use wasm_bindgen::closure::Closure;
use web_sys::{BroadcastChannel, MessageEvent};

use super::event_source::{self, Ending, StreamCell, attach, deliver, now_ms, show_client};
use super::link::{Link, Place};
use super::lock;
use super::tab_talk::{BEAT, Message, Tab, Watch};

/// Joins the tabs sharing this handle's stream. False when the browser
/// lacks Web Locks or `BroadcastChannel`: the caller opens its own.
pub fn join(cell: &StreamCell) -> bool {
    let has_channel = Reflect::has(&js_sys::global(), &"BroadcastChannel".into());
    if !lock::available() || !has_channel.unwrap_or(false) {
        return false;
    }
    let key = cell.borrow().options.share_key();
    let Ok(channel) = BroadcastChannel::new(&key) else {
        return false;
    };

    let weak = Rc::downgrade(cell);
    let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
        let Some(cell) = weak.upgrade() else { return };
        let parts: Vec<String> = js_sys::Array::from(&event.data())
            .iter()
            .filter_map(|part| part.as_string())
            .collect();
        let Some(message) = Message::from_parts(&parts) else {
            return;
        };
        receive(&cell, message);
    });
    channel.set_onmessage(Some(on_message.as_ref().unchecked_ref()));

    let weak = Rc::downgrade(cell);
    let ticker = set_interval_with_handle(
        move || {
            if let Some(cell) = weak.upgrade() {
                tick(&cell);
            }
        },
        Duration::from_millis(BEAT),
    )
    .ok();

    {
        let mut inner = cell.borrow_mut();
        inner.link = Some(Link {
            channel,
            _on_message: on_message,
            ticker,
            lock: Place::default(),
            watch: Watch::new(now_ms(), js_sys::Math::random()),
        });
    }
    if !lock::request(cell, lock::Ask::Wait) {
        cell.borrow_mut().stop_sharing();
        return false;
    }
    cell.borrow().announce();
    true
}

/// Every [`BEAT`]: a leader says it is alive; a follower on a visible
/// page whose leader has been silent too long takes the lock from it.
fn tick(cell: &StreamCell) {
    let (leader, stale) = {
        let mut inner = cell.borrow_mut();
        let closed = inner.closed;
        let Some(link) = inner.link.as_mut().filter(|_| !closed) else {
            return;
        };
        let stale = link.watch.stale(now_ms());
        (inner.leader, stale)
    };
    if leader {
        let inner = cell.borrow();
        let state = inner.state.clone();
        inner.post(&Message::Beat { state });
        return;
    }
    let visible = web_sys::window()
        .and_then(|w| w.document())
        .is_some_and(|d| !d.hidden());
    if stale && visible {
        if let Some(link) = cell.borrow_mut().link.as_mut() {
            link.watch.heard(now_ms());
        }
        leptos::logging::warn!("the tab holding the stream is silent: taking it over");
        lock::request(cell, lock::Ask::Steal);
    }
}

/// A message from another tab.
fn receive(cell: &StreamCell, message: Message) {
    let (reaction, source) = {
        let mut inner = cell.borrow_mut();
        if inner.closed {
            return;
        }
        let leader = inner.leader;
        if Tab::from_leader(&message)
            && let Some(link) = inner.link.as_mut()
        {
            link.watch.heard(now_ms());
        }
        let mut reaction = inner.tab.handle(message, leader);
        if let Some(state) = &reaction.state {
            inner.show_state(state.clone());
        }
        if reaction.client.is_some() {
            show_client(&inner);
        }
        if let Some(reason) = reaction.close.take() {
            drop(inner);
            event_source::close(cell, &reason, Ending::Final);
            return;
        }
        if reaction.sync {
            let state = inner.state.clone();
            let sync = inner.tab.sync(state);
            inner.post(&sync);
        }
        (reaction, inner.source())
    };
    if let Some(source) = source {
        for name in &reaction.attach {
            attach(cell, &source, name);
        }
    }
    if let Some(event) = reaction.deliver {
        deliver(cell, event);
    }
}
