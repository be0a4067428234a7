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
use leptos::prelude::{IntervalHandle, set_interval_with_handle};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use web_sys::{BroadcastChannel, MessageEvent};

use super::event_source::{self, Ending, Inner, StreamCell, attach, deliver, now_ms, show_client};
use super::lock;
use super::tab_talk::{BEAT, Message, Tab, Watch};

/// How long a leader whose stream is over for good keeps the lock after
/// saying so: long enough for the other tabs to hear it and close too,
/// rather than one of them taking the lock and trying again.
const FINAL_GRACE: Duration = Duration::from_millis(500);

/// This tab's part in sharing: its channel and its place at the lock.
pub struct Link {
    channel: BroadcastChannel,
    /// Kept alive while the channel may call it.
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    /// Beats while leading; watches the leader while following.
    ticker: Option<IntervalHandle>,
    pub(super) lock: lock::Place,
    /// When the leader was last heard from.
    pub(super) watch: Watch,
}

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
            lock: lock::Place::default(),
            watch: Watch::new(now_ms(), js_sys::Math::random()),
        });
    }
    if !lock::request(cell, lock::Ask::Wait) {
        stop_sharing(cell);
        return false;
    }
    announce(cell);
    true
}

/// Tells the tabs this one is here and what it listens for: the leader
/// answers with everything a joining tab needs.
pub(super) fn announce(cell: &StreamCell) {
    let inner = cell.borrow();
    let names = inner.tab.names().map(str::to_string).collect();
    post(&inner, &Message::Join { names });
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
        post(&inner, &Message::Beat { state });
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

/// Sends a message to the other tabs (nothing when not sharing).
pub fn post(inner: &Inner, message: &Message) {
    let Some(link) = &inner.link else { return };
    let parts: js_sys::Array = message
        .to_parts()
        .iter()
        .map(|part| JsValue::from_str(part))
        .collect();
    if let Err(e) = link.channel.post_message(&parts) {
        leptos::logging::warn!("cannot reach the other tabs: {e:?}");
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
            post(&inner, &sync);
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

/// Leaves the tabs. A leader that hands over says so and gives the lock
/// back at once (the next tab in line takes it); one whose stream is over
/// for good has said so (`Closed`) and keeps the lock a moment, so that
/// the others close rather than take it. A tab still waiting withdraws.
pub fn leave(cell: &StreamCell, ending: Ending) {
    let leader = cell.borrow().leader;
    if leader && ending == Ending::HandOver {
        post(&cell.borrow(), &Message::Leaving);
    }
    let Some(link) = stop_sharing(cell) else {
        return;
    };
    let grace = (ending == Ending::Final).then_some(FINAL_GRACE);
    link.lock.give_back(grace);
}

/// Closes this tab's channel and stops its ticker; returns its link
/// (its place at the lock) to the caller.
pub(super) fn stop_sharing(cell: &StreamCell) -> Option<Link> {
    let mut link = cell.borrow_mut().link.take()?;
    link.channel.set_onmessage(None);
    link.channel.close();
    if let Some(ticker) = link.ticker.take() {
        ticker.clear();
    }
    Some(link)
}
