//! One stream per browser: the tabs of one profile that ask for the same
//! stream elect a leader with the Web Locks API and share its stream over
//! a `BroadcastChannel` (browser only).
//!
//! Every tab asks for the lock named after the stream and waits; the
//! browser grants it to one tab at a time and takes it back when that tab
//! closes or crashes, so exactly one tab holds the stream and a waiting
//! tab takes over without any timeout of ours. The leader relays every
//! event and state change; the others hold no connection.

use js_sys::{Function, Object, Promise, Reflect};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::prelude::wasm_bindgen;
use wasm_bindgen::{JsCast, JsValue};
use web_sys::{AbortController, BroadcastChannel, MessageEvent};

use std::rc::Rc;
use std::time::Duration;

use leptos::prelude::set_timeout;

use super::event_source::{self, Ending, Inner, Shared, attach, deliver, lead, show_client};
use super::relay::Message;

/// How long a leader whose stream is over for good keeps the lock after
/// saying so: long enough for the other tabs to hear it and close too,
/// rather than one of them taking the lock and trying again.
const FINAL_GRACE: Duration = Duration::from_millis(500);

#[wasm_bindgen]
extern "C" {
    /// `navigator.locks` (web-sys has it only behind its unstable flag).
    type LockManager;

    /// Rejects where locks are not allowed (an opaque origin, site data
    /// blocked); `catch` for a browser that throws instead.
    #[wasm_bindgen(method, catch)]
    fn request(
        this: &LockManager,
        name: &str,
        options: &Object,
        granted: &Function,
    ) -> Result<Promise, JsValue>;
}

/// This tab's part in sharing: its channel and its place at the lock.
pub struct Link {
    channel: BroadcastChannel,
    /// Kept alive while the channel may call it.
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    /// Withdraws the lock request of a tab still waiting.
    abort: AbortController,
    /// Resolving it gives the lock back (set while this tab leads).
    release: Option<Function>,
}

/// Joins the tabs sharing this handle's stream. False when the browser
/// lacks Web Locks or `BroadcastChannel`: the caller opens its own.
pub fn join(shared: &Shared) -> bool {
    let Some(locks) = lock_manager() else {
        return false;
    };
    let key = shared.borrow().options.share_key();
    let Ok(channel) = BroadcastChannel::new(&key) else {
        return false;
    };
    let Ok(abort) = AbortController::new() else {
        return false;
    };
    let options = Object::new();
    if Reflect::set(&options, &"signal".into(), &abort.signal()).is_err() {
        return false;
    }

    let weak = Rc::downgrade(shared);
    let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
        let Some(shared) = weak.upgrade() else { return };
        let parts: Vec<String> = js_sys::Array::from(&event.data())
            .iter()
            .filter_map(|part| part.as_string())
            .collect();
        let Some(message) = Message::from_parts(&parts) else {
            return;
        };
        receive(&shared, message);
    });
    channel.set_onmessage(Some(on_message.as_ref().unchecked_ref()));

    let weak = Rc::downgrade(shared);
    let granted = Closure::<dyn FnMut(JsValue) -> Promise>::new(move |_lock: JsValue| {
        let Some(shared) = weak.upgrade() else {
            return Promise::resolve(&JsValue::UNDEFINED);
        };
        if shared.borrow().closed {
            return Promise::resolve(&JsValue::UNDEFINED);
        }
        // Held until `leave` resolves it, or the tab goes.
        let mut resolve = None;
        let held = Promise::new(&mut |done, _| resolve = Some(done));
        if let Some(link) = shared.borrow_mut().link.as_mut() {
            link.release = resolve;
        }
        lead(&shared);
        held
    });

    let Ok(waiting) = locks.request(&key, &options, granted.as_ref().unchecked_ref()) else {
        channel.set_onmessage(None);
        channel.close();
        return false;
    };
    // Settles when the lock is given back, or rejects when the request is
    // withdrawn (`AbortError`): until then the browser may call `granted`
    // (a grant already queued when the request is withdrawn still runs,
    // sees `closed` and gives the lock straight back), so it lives as long.
    let weak = Rc::downgrade(shared);
    leptos::task::spawn_local(async move {
        let refused = wasm_bindgen_futures::JsFuture::from(waiting).await.is_err();
        drop(granted);
        // Refused without our asking (locks not allowed here): a
        // stream of its own, as where the browser has no locks at all.
        if refused
            && let Some(shared) = weak.upgrade()
            && !shared.borrow().closed
            && !shared.borrow().leader
        {
            stop_sharing(&shared);
            lead(&shared);
        }
    });

    let mut inner = shared.borrow_mut();
    let names = inner.tab.names().map(str::to_string).collect();
    inner.link = Some(Link {
        channel,
        _on_message: on_message,
        abort,
        release: None,
    });
    post(&inner, &Message::Join { names });
    true
}

/// `navigator.locks`, if this browser and context have it.
fn lock_manager() -> Option<LockManager> {
    let navigator = web_sys::window()?.navigator();
    let locks = Reflect::get(&navigator, &"locks".into()).ok()?;
    let has_channel = Reflect::has(&js_sys::global(), &"BroadcastChannel".into()).ok()?;
    (has_channel && locks.is_object()).then(|| locks.unchecked_into())
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
fn receive(shared: &Shared, message: Message) {
    let (reaction, source) = {
        let mut inner = shared.borrow_mut();
        if inner.closed {
            return;
        }
        let leader = inner.leader;
        let mut reaction = inner.tab.handle(message, leader);
        if let Some(state) = &reaction.state {
            inner.show_state(state.clone());
        }
        if reaction.client.is_some() {
            show_client(&inner);
        }
        if let Some(reason) = reaction.close.take() {
            drop(inner);
            event_source::close(shared, &reason, Ending::Final);
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
            attach(shared, &source, name);
        }
    }
    if let Some(event) = reaction.deliver {
        deliver(shared, event);
    }
}

/// Leaves the tabs. A leader that hands over says so and gives the lock
/// back at once (the next tab in line takes it); one whose stream is over
/// for good has said so (`Closed`) and keeps the lock a moment, so that
/// the others close rather than take it. A tab still waiting withdraws.
pub fn leave(shared: &Shared, ending: Ending) {
    let leader = shared.borrow().leader;
    if leader && ending == Ending::HandOver {
        post(&shared.borrow(), &Message::Leaving);
    }
    let Some(link) = stop_sharing(shared) else {
        return;
    };
    match link.release {
        Some(release) if ending == Ending::Final => {
            set_timeout(
                move || {
                    let _ = release.call0(&JsValue::UNDEFINED);
                },
                FINAL_GRACE,
            );
        }
        Some(release) => {
            let _ = release.call0(&JsValue::UNDEFINED);
        }
        None => link.abort.abort(),
    }
}

/// Closes this tab's channel; returns its link (lock) to the caller.
fn stop_sharing(shared: &Shared) -> Option<Link> {
    let link = shared.borrow_mut().link.take()?;
    link.channel.set_onmessage(None);
    link.channel.close();
    Some(link)
}
