//! The `EventSource`, its listeners and the reconnect timer (browser only).

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use leptos::prelude::*;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use wasm_bindgen::JsCast;
use wasm_bindgen::closure::Closure;
use web_sys::{EventSource, EventSourceInit, MessageEvent};

use super::{ConnectionState, RawEvent, SseOptions, Writers};

pub type Shared = Rc<RefCell<Inner>>;
type Listener = Rc<dyn Fn(&RawEvent)>;

pub struct Inner {
    options: SseOptions,
    writers: Writers,
    source: Option<EventSource>,
    /// JS callbacks of the current source; dropped with it.
    callbacks: Vec<Closure<dyn FnMut(MessageEvent)>>,
    on_open: Option<Closure<dyn FnMut(web_sys::Event)>>,
    on_error: Option<Closure<dyn FnMut(web_sys::Event)>>,
    /// Waits for the page's `load` event before the first connect.
    on_load: Option<Closure<dyn FnMut()>>,
    listeners: HashMap<String, Vec<(u64, Listener)>>,
    next_listener: u64,
    attempt: u32,
    timer: Option<TimeoutHandle>,
    closed: bool,
    /// The id of the last event seen (any source of this handle): where a
    /// source we open ourselves resumes (`?lastEventId=`). The browser's
    /// own retries send it as `Last-Event-ID` without our help.
    last_id: Option<String>,
    /// This handle's client id (from `connected`): a reconnect asks for it
    /// back (`?client=`), so events sent to it are replayed too.
    client_id: Option<String>,
    /// A draining server's reconnect delay (`sse-drain`), jittered by the
    /// server: used once, instead of the backoff.
    drain_delay: Option<u64>,
}

/// Listened to on every source, whoever asked: `connected` (the client
/// id, and the stream's first id), `sse-reset` (an id too) and
/// `sse-drain` (when to come back).
const BUILT_IN: [&str; 3] = ["connected", "sse-reset", "sse-drain"];

pub fn start(options: SseOptions, writers: Writers) -> Shared {
    let shared = Rc::new(RefCell::new(Inner {
        options,
        writers,
        source: None,
        callbacks: Vec::new(),
        on_open: None,
        on_error: None,
        on_load: None,
        listeners: HashMap::new(),
        next_listener: 0,
        attempt: 0,
        timer: None,
        closed: false,
        last_id: None,
        client_id: None,
        drain_delay: None,
    }));
    // A stream opened while the page is still loading keeps the browser
    // "loading" (spinner, no `load` event) for as long as it is open:
    // connect once the page has loaded.
    let window = web_sys::window();
    let loaded = window
        .as_ref()
        .and_then(|w| w.document())
        .is_none_or(|d| d.ready_state() == "complete");
    match window {
        Some(window) if !loaded => {
            let weak = Rc::downgrade(&shared);
            let on_load = Closure::<dyn FnMut()>::new(move || {
                // The closure stays in `on_load` (dropping it while it
                // runs is not allowed); `once` makes it fire only once.
                if let Some(shared) = weak.upgrade()
                    && !shared.borrow().closed
                {
                    open(&shared);
                }
            });
            let once = web_sys::AddEventListenerOptions::new();
            once.set_once(true);
            let added = window.add_event_listener_with_callback_and_add_event_listener_options(
                "load",
                on_load.as_ref().unchecked_ref(),
                &once,
            );
            if added.is_ok() {
                shared.borrow_mut().on_load = Some(on_load);
            } else {
                open(&shared);
            }
        }
        _ => open(&shared),
    }
    shared
}

fn now_ms() -> u64 {
    js_sys::Date::now() as u64
}

/// Opens a new `EventSource` with every known listener attached, resuming
/// after the last event seen, if any.
fn open(shared: &Shared) {
    let url = {
        let inner = shared.borrow();
        let mut url = inner.options.full_url();
        if let Some(id) = &inner.last_id {
            url.push(if url.contains('?') { '&' } else { '?' });
            url.push_str("lastEventId=");
            url.extend(utf8_percent_encode(id, NON_ALPHANUMERIC));
            if let Some(client) = &inner.client_id {
                url.push_str("&client=");
                url.extend(utf8_percent_encode(client, NON_ALPHANUMERIC));
            }
        }
        url
    };
    let init = EventSourceInit::new();
    init.set_with_credentials(true);
    let source = match EventSource::new_with_event_source_init_dict(&url, &init) {
        Ok(source) => source,
        Err(e) => {
            close(shared, &format!("cannot open {url}: {e:?}"));
            return;
        }
    };
    {
        let mut inner = shared.borrow_mut();
        inner.callbacks.clear();
        inner.source = Some(source.clone());
    }
    for name in BUILT_IN {
        attach(shared, &source, name);
    }
    let names: Vec<String> = shared.borrow().listeners.keys().cloned().collect();
    for name in names {
        if !BUILT_IN.contains(&name.as_str()) {
            attach(shared, &source, &name);
        }
    }

    let weak = Rc::downgrade(shared);
    let on_open = Closure::<dyn FnMut(web_sys::Event)>::new(move |_| {
        if let Some(shared) = weak.upgrade() {
            let mut inner = shared.borrow_mut();
            inner.attempt = 0;
            inner.writers.state.set(ConnectionState::Open);
        }
    });
    source.set_onopen(Some(on_open.as_ref().unchecked_ref()));

    let weak = Rc::downgrade(shared);
    let on_error = Closure::<dyn FnMut(web_sys::Event)>::new(move |_| {
        if let Some(shared) = weak.upgrade() {
            on_failure(&shared);
        }
    });
    source.set_onerror(Some(on_error.as_ref().unchecked_ref()));

    let mut inner = shared.borrow_mut();
    inner.on_open = Some(on_open);
    inner.on_error = Some(on_error);
}

/// Dispatches events named `name` from `source` to our listeners.
fn attach(shared: &Shared, source: &EventSource, name: &str) {
    let weak = Rc::downgrade(shared);
    let event_name = name.to_string();
    let callback = Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
        let Some(shared) = weak.upgrade() else { return };
        let raw = RawEvent {
            name: event_name.clone(),
            id: Some(event.last_event_id()).filter(|id| !id.is_empty()),
            data: event.data().as_string().unwrap_or_default(),
            received_at: now_ms(),
        };
        if raw.id.is_some() {
            shared.borrow_mut().last_id.clone_from(&raw.id);
        }
        if raw.name == "connected" {
            let id = serde_json::from_str::<serde_json::Value>(&raw.data)
                .ok()
                .and_then(|v| v["clientId"].as_str().map(str::to_string));
            shared.borrow_mut().client_id = id;
        }
        if raw.name == "sse-drain" {
            shared.borrow_mut().drain_delay = serde_json::from_str::<serde_json::Value>(&raw.data)
                .ok()
                .and_then(|v| v["retry"].as_u64());
        }
        let listeners: Vec<Listener> = {
            let inner = shared.borrow();
            if raw.name == "connected" {
                inner.writers.client_id.set(inner.client_id.clone());
            } else if raw.name != "sse-reset" && raw.name != "sse-drain" {
                inner.writers.last_event.set(Some(raw.clone()));
            }
            inner
                .listeners
                .get(&raw.name)
                .map(|l| l.iter().map(|(_, f)| f.clone()).collect())
                .unwrap_or_default()
        };
        // Called with no borrow held: a listener may add or remove listeners.
        for listener in listeners {
            listener(&raw);
        }
    });
    if let Err(e) = source.add_event_listener_with_callback(name, callback.as_ref().unchecked_ref())
    {
        leptos::logging::warn!("cannot listen for {name:?}: {e:?}");
    }
    shared.borrow_mut().callbacks.push(callback);
}

/// Registers a listener; returns its remover.
pub fn listen(shared: &Shared, name: &str, listener: Listener) -> Box<dyn FnOnce()> {
    let (id, new_name, source) = {
        let mut inner = shared.borrow_mut();
        let id = inner.next_listener;
        inner.next_listener += 1;
        let entry = inner.listeners.entry(name.to_string()).or_default();
        let new_name = entry.is_empty();
        entry.push((id, listener));
        (id, new_name, inner.source.clone())
    };
    if new_name
        && !BUILT_IN.contains(&name)
        && let Some(source) = source
    {
        attach(shared, &source, name);
    }
    let weak = Rc::downgrade(shared);
    let name = name.to_string();
    Box::new(move || {
        if let Some(shared) = weak.upgrade()
            && let Some(list) = shared.borrow_mut().listeners.get_mut(&name)
        {
            list.retain(|(i, _)| *i != id);
        }
    })
}

/// The source reported an error. Reconnecting is always ours: the
/// browser's own retry would reopen the same URL, without the client id
/// to take back; ours resumes after the last id with it, after a jittered
/// backoff (so a server restart is not met by every page at once). When
/// the browser gave up (an HTTP error), the stream URL is asked for its
/// status first, so that a signed-out page stops retrying.
fn on_failure(shared: &Shared) {
    let (gave_up, attempt) = {
        let mut inner = shared.borrow_mut();
        if inner.closed {
            return;
        }
        inner.attempt += 1;
        let gave_up = inner
            .source
            .as_ref()
            .is_none_or(|s| s.ready_state() == EventSource::CLOSED);
        (gave_up, inner.attempt)
    };
    shared
        .borrow()
        .writers
        .state
        .set(ConnectionState::Reconnecting { attempt });
    drop_source(shared);
    let options = shared.borrow().options.clone();
    if !options.auto_reconnect {
        close(shared, "the server closed the stream");
        return;
    }
    if options
        .max_reconnect_attempts
        .is_some_and(|max| attempt > max)
    {
        close(shared, &format!("gave up after {} attempts", attempt - 1));
        return;
    }
    if !gave_up {
        reopen_later(shared, &options, attempt);
        return;
    }
    // Ask the server why, so that a signed-out page stops retrying.
    let weak = Rc::downgrade(shared);
    let url = options.full_url();
    leptos::task::spawn_local(async move {
        let status = probe(&url).await;
        let Some(shared) = weak.upgrade() else { return };
        if shared.borrow().closed {
            return;
        }
        if status == Some(401) {
            close(&shared, "signed out (401)");
            return;
        }
        reopen_later(&shared, &options, attempt);
    });
}

/// Opens a new source after the backoff for `attempt`, with jitter.
fn reopen_later(shared: &Shared, options: &SseOptions, attempt: u32) {
    {
        let base = options.backoff(attempt);
        let spread = base.as_millis() as f64 * options.jitter.clamp(0.0, 1.0);
        let backoff =
            (base.as_millis() as f64 + spread * (2.0 * js_sys::Math::random() - 1.0)).max(0.0);
        // A draining server said when: its clients come back spread out.
        let drained = shared.borrow_mut().drain_delay.take();
        let delay = drained.map_or(backoff, |ms| ms as f64);
        let again = Rc::downgrade(shared);
        let timer = set_timeout_with_handle(
            move || {
                if let Some(shared) = again.upgrade()
                    && !shared.borrow().closed
                {
                    shared.borrow_mut().timer = None;
                    open(&shared);
                }
            },
            Duration::from_millis(delay as u64),
        );
        shared.borrow_mut().timer = timer.ok();
    }
}

/// The HTTP status the stream URL answers now (the request is aborted
/// as soon as the headers arrive).
async fn probe(url: &str) -> Option<u16> {
    let abort = web_sys::AbortController::new().ok()?;
    let response = gloo_net::http::Request::get(url)
        .abort_signal(Some(&abort.signal()))
        .credentials(web_sys::RequestCredentials::SameOrigin)
        .send()
        .await
        .ok()?;
    let status = response.status();
    abort.abort();
    Some(status)
}

fn drop_source(shared: &Shared) {
    let mut inner = shared.borrow_mut();
    if let Some(source) = inner.source.take() {
        source.set_onopen(None);
        source.set_onerror(None);
        source.close();
    }
    inner.callbacks.clear();
    inner.on_open = None;
    inner.on_error = None;
}

/// Ends everything: the source, the timer, future reconnects.
pub fn close(shared: &Shared, reason: &str) {
    drop_source(shared);
    let mut inner = shared.borrow_mut();
    inner.closed = true;
    if let Some(timer) = inner.timer.take() {
        timer.clear();
    }
    inner.writers.state.set(ConnectionState::Closed {
        reason: reason.to_string(),
    });
}
