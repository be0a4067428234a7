//! The `EventSource`, its listeners and the reconnect timer (browser only).
//!
//! A handle either owns the stream (it leads, or does not share) or is
//! fed by the tab that does ([`super::tabs`]); either way every event
//! goes through its [`Tab`], which drops what was already delivered.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use leptos::prelude::*;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use wasm_bindgen::JsCast;
use wasm_bindgen::closure::Closure;
use web_sys::{EventSource, EventSourceInit, MessageEvent};

use super::link::{FINAL_GRACE, Link};
use super::tab_talk::{BUILT_IN, Message, Tab, WireEvent};
use super::{ConnectionState, RawEvent, SseOptions, Writers};

pub type StreamCell = Rc<RefCell<Inner>>;
type Listener = Rc<dyn Fn(&RawEvent)>;

pub struct Inner {
    pub(super) options: SseOptions,
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
    pub(super) closed: bool,
    /// What this tab has seen: where a stream it opens resumes (the last
    /// id, `?lastEventId=`, and its client id, `?client=`, so events sent
    /// to it are replayed too), and the names to listen for.
    pub(super) tab: Tab,
    /// Whether this handle owns the stream (always, when not sharing).
    pub(super) leader: bool,
    /// Counts the times this handle took the stream or gave it up: work
    /// begun in one term (a status probe) is dropped in another.
    term: u32,
    /// The state shown, for a tab that joins.
    pub(super) state: ConnectionState,
    /// The other tabs, when sharing.
    pub(super) link: Option<Link>,
    /// A draining server's reconnect delay (`sse-drain`), jittered by the
    /// server: used once, instead of the backoff.
    drain_delay: Option<u64>,
}

impl Inner {
    /// Shows a state another tab reported (nothing to relay).
    pub(super) fn show_state(&mut self, state: ConnectionState) {
        self.writers.state.set(state.clone());
        self.state = state;
    }

    pub(super) fn source(&self) -> Option<EventSource> {
        self.source.clone()
    }

    /// Sends a message to the other tabs (nothing when not sharing).
    pub(super) fn post(&self, message: &Message) {
        if let Some(link) = &self.link {
            link.post(message);
        }
    }

    /// Tells the tabs this one is here and what it listens for: the
    /// leader answers with everything a joining tab needs.
    pub(super) fn announce(&self) {
        let names = self.tab.names().map(str::to_string).collect();
        self.post(&Message::Join { names });
    }

    /// Stops sharing: a stream of its own from now on, if any. The place
    /// at the lock is dropped (a request still waiting stays in the
    /// browser's queue until it settles, unheeded).
    pub(super) fn stop_sharing(&mut self) {
        if let Some(link) = self.link.take() {
            drop(link.stop());
        }
    }
}

/// The handle's state, not connected yet: the caller makes it lead, or
/// join the tabs sharing its stream ([`super::tabs::join`]).
pub fn start(options: SseOptions, writers: Writers) -> StreamCell {
    Rc::new(RefCell::new(Inner {
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
        tab: Tab::default(),
        leader: false,
        term: 0,
        state: ConnectionState::Connecting,
        link: None,
        drain_delay: None,
    }))
}

/// This handle owns the stream from now on: open it once the page has
/// loaded (a stream opened while the page is still loading keeps the
/// browser "loading", with no `load` event, for as long as it is open).
pub(super) fn lead(cell: &StreamCell) {
    {
        let mut inner = cell.borrow_mut();
        inner.leader = true;
        inner.term = inner.term.wrapping_add(1);
    }
    set_state(cell, ConnectionState::Connecting);
    let window = web_sys::window();
    let loaded = window
        .as_ref()
        .and_then(|w| w.document())
        .is_none_or(|d| d.ready_state() == "complete");
    let window = match window {
        Some(window) if !loaded => window,
        _ => return open(cell),
    };
    // Already waiting for `load` (from an earlier term): it opens then.
    if cell.borrow().on_load.is_some() {
        return;
    }
    let weak = Rc::downgrade(cell);
    let on_load = Closure::<dyn FnMut()>::new(move || {
        // The closure stays in `on_load` (dropping it while it runs is
        // not allowed); `once` makes it fire only once.
        if let Some(cell) = weak.upgrade()
            && !cell.borrow().closed
            && cell.borrow().leader
        {
            open(&cell);
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
        cell.borrow_mut().on_load = Some(on_load);
    } else {
        open(cell);
    }
}

/// Another tab has taken the stream over (this one was found silent):
/// this handle stops owning it and follows again.
pub(super) fn step_down(cell: &StreamCell) {
    drop_source(cell);
    let mut inner = cell.borrow_mut();
    inner.leader = false;
    inner.term = inner.term.wrapping_add(1);
    inner.attempt = 0;
    inner.drain_delay = None;
    if let Some(timer) = inner.timer.take() {
        timer.clear();
    }
    inner.show_state(ConnectionState::Connecting);
}

pub(super) fn now_ms() -> u64 {
    js_sys::Date::now() as u64
}

/// Shows `state` here and, when leading, in every other tab.
pub(super) fn set_state(cell: &StreamCell, state: ConnectionState) {
    let mut inner = cell.borrow_mut();
    inner.show_state(state.clone());
    if inner.leader {
        inner.post(&Message::State { state });
    }
}

/// Shows the client id the tab's view holds now.
pub(super) fn show_client(inner: &Inner) {
    inner
        .writers
        .client_id
        .set(inner.tab.client().map(str::to_string));
}

/// Opens a new `EventSource` listening for every name any tab asked for,
/// resuming after the last event seen, if any.
fn open(cell: &StreamCell) {
    let (url, names) = {
        let inner = cell.borrow();
        let mut url = inner.options.full_url();
        let resume = inner.tab.resume();
        if let Some(id) = resume.last_id {
            url.push(if url.contains('?') { '&' } else { '?' });
            url.push_str("lastEventId=");
            url.extend(utf8_percent_encode(id, NON_ALPHANUMERIC));
            if let Some(client) = resume.client {
                url.push_str("&client=");
                url.extend(utf8_percent_encode(client, NON_ALPHANUMERIC));
            }
        }
        let names: Vec<String> = inner.tab.names().map(str::to_string).collect();
        (url, names)
    };
    // Never two sources: one left from before would be retried by the
    // browser with the same client id, and the two would replace each
    // other on the server.
    drop_source(cell);
    let init = EventSourceInit::new();
    init.set_with_credentials(true);
    let source = match EventSource::new_with_event_source_init_dict(&url, &init) {
        Ok(source) => source,
        Err(e) => {
            close(cell, &format!("cannot open {url}: {e:?}"), Ending::Final);
            return;
        }
    };
    {
        let mut inner = cell.borrow_mut();
        inner.callbacks.clear();
        inner.source = Some(source.clone());
    }
    for name in BUILT_IN
        .iter()
        .copied()
        .chain(names.iter().map(String::as_str))
    {
        attach(cell, &source, name);
    }

    let weak = Rc::downgrade(cell);
    let on_open = Closure::<dyn FnMut(web_sys::Event)>::new(move |_| {
        if let Some(cell) = weak.upgrade() {
            cell.borrow_mut().attempt = 0;
            set_state(&cell, ConnectionState::Open);
        }
    });
    source.set_onopen(Some(on_open.as_ref().unchecked_ref()));

    let weak = Rc::downgrade(cell);
    let on_error = Closure::<dyn FnMut(web_sys::Event)>::new(move |_| {
        if let Some(cell) = weak.upgrade() {
            on_failure(&cell);
        }
    });
    source.set_onerror(Some(on_error.as_ref().unchecked_ref()));

    let mut inner = cell.borrow_mut();
    inner.on_open = Some(on_open);
    inner.on_error = Some(on_error);
}

/// Dispatches events named `name` from `source`.
pub(super) fn attach(cell: &StreamCell, source: &EventSource, name: &str) {
    let weak = Rc::downgrade(cell);
    let event_name = name.to_string();
    let callback = Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
        let Some(cell) = weak.upgrade() else { return };
        let event = WireEvent {
            name: event_name.clone(),
            id: Some(event.last_event_id()).filter(|id| !id.is_empty()),
            data: event.data().as_string().unwrap_or_default(),
        };
        from_source(&cell, event);
    });
    if let Err(e) = source.add_event_listener_with_callback(name, callback.as_ref().unchecked_ref())
    {
        leptos::logging::warn!("cannot listen for {name:?}: {e:?}");
    }
    cell.borrow_mut().callbacks.push(callback);
}

/// An event from this handle's own stream: relayed to the other tabs
/// (all of it: a tab behind this one may still need what this one has),
/// then delivered here unless already seen.
fn from_source(cell: &StreamCell, event: WireEvent) {
    let delivered = {
        let mut inner = cell.borrow_mut();
        if event.name == "sse-drain" {
            inner.drain_delay = serde_json::from_str::<serde_json::Value>(&event.data)
                .ok()
                .and_then(|v| v["retry"].as_u64());
        }
        if inner.link.is_some() {
            inner.post(&Message::Event(event.clone()));
        }
        let client = inner.tab.client().map(str::to_string);
        let delivered = inner.tab.receive(event);
        if inner.tab.client() != client.as_deref() {
            show_client(&inner);
        }
        delivered
    };
    if let Some(event) = delivered {
        deliver(cell, event);
    }
}

/// Hands an event to this page: its listeners for that name, and
/// `last_event` (not for the stream's own bookkeeping events).
pub(super) fn deliver(cell: &StreamCell, event: WireEvent) {
    let listeners: Vec<Listener> = {
        let inner = cell.borrow();
        let Some(listeners) = inner.listeners.get(&event.name) else {
            return;
        };
        listeners.iter().map(|(_, f)| f.clone()).collect()
    };
    let raw = RawEvent {
        name: event.name,
        id: event.id,
        data: event.data,
        received_at: now_ms(),
    };
    if !BUILT_IN.contains(&raw.name.as_str()) {
        cell.borrow().writers.last_event.set(Some(raw.clone()));
    }
    // Called with no borrow held: a listener may add or remove listeners.
    for listener in listeners {
        listener(&raw);
    }
}

/// Registers a listener; returns its remover.
pub fn listen(cell: &StreamCell, name: &str, listener: Listener) -> Box<dyn FnOnce()> {
    let (id, new_name, source) = {
        let mut inner = cell.borrow_mut();
        let id = inner.next_listener;
        inner.next_listener += 1;
        inner
            .listeners
            .entry(name.to_string())
            .or_default()
            .push((id, listener));
        let new_name = inner.tab.listen_for(name);
        if new_name {
            inner.post(&Message::Names {
                names: vec![name.to_string()],
            });
        }
        (id, new_name, inner.source.clone())
    };
    if new_name && let Some(source) = source {
        attach(cell, &source, name);
    }
    let weak = Rc::downgrade(cell);
    let name = name.to_string();
    Box::new(move || {
        if let Some(cell) = weak.upgrade()
            && let Some(list) = cell.borrow_mut().listeners.get_mut(&name)
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
fn on_failure(cell: &StreamCell) {
    let (gave_up, attempt) = {
        let mut inner = cell.borrow_mut();
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
    set_state(cell, ConnectionState::Reconnecting { attempt });
    drop_source(cell);
    let options = cell.borrow().options.clone();
    if !options.auto_reconnect {
        close(cell, "the server closed the stream", Ending::Final);
        return;
    }
    if options
        .max_reconnect_attempts
        .is_some_and(|max| attempt > max)
    {
        close(
            cell,
            &format!("gave up after {} attempts", attempt - 1),
            Ending::Final,
        );
        return;
    }
    if !gave_up {
        reopen_later(cell, &options, attempt);
        return;
    }
    // Ask the server why, so that a signed-out page stops retrying.
    let weak = Rc::downgrade(cell);
    let url = options.full_url();
    let term = cell.borrow().term;
    leptos::task::spawn_local(async move {
        let status = probe(&url).await;
        let Some(cell) = weak.upgrade() else { return };
        // Closed, or the stream changed hands meanwhile.
        if cell.borrow().closed || cell.borrow().term != term {
            return;
        }
        if status == Some(401) {
            close(&cell, "signed out (401)", Ending::Final);
            return;
        }
        reopen_later(&cell, &options, attempt);
    });
}

/// Opens a new source after the backoff for `attempt`, with jitter.
fn reopen_later(cell: &StreamCell, options: &SseOptions, attempt: u32) {
    let base = options.backoff(attempt);
    let spread = base.as_millis() as f64 * options.jitter.clamp(0.0, 1.0);
    let backoff =
        (base.as_millis() as f64 + spread * (2.0 * js_sys::Math::random() - 1.0)).max(0.0);
    // A draining server said when: its clients come back spread out.
    let drained = cell.borrow_mut().drain_delay.take();
    let delay = drained.map_or(backoff, |ms| ms as f64);
    let again = Rc::downgrade(cell);
    let timer = set_timeout_with_handle(
        move || {
            if let Some(cell) = again.upgrade()
                && !cell.borrow().closed
                && cell.borrow().leader
            {
                cell.borrow_mut().timer = None;
                open(&cell);
            }
        },
        Duration::from_millis(delay as u64),
    );
    cell.borrow_mut().timer = timer.ok();
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

fn drop_source(cell: &StreamCell) {
    let mut inner = cell.borrow_mut();
    if let Some(source) = inner.source.take() {
        source.set_onopen(None);
        source.set_onerror(None);
        source.close();
    }
    inner.callbacks.clear();
    inner.on_open = None;
    inner.on_error = None;
}

/// Why a handle ends, which decides what the other tabs do.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The page is done with it (closed by the page, or cleaned up): a
    /// leader hands the stream over to the next tab.
    HandOver,
    /// The stream is over for every tab sharing it (signed out, gave up,
    /// the server ended it without reconnects): they close too, rather
    /// than each trying again in turn.
    Final,
}

/// Ends everything here: the source, the timer, future reconnects, and
/// this tab's part in sharing.
pub fn close(cell: &StreamCell, reason: &str, ending: Ending) {
    drop_source(cell);
    {
        let mut inner = cell.borrow_mut();
        if inner.closed {
            return;
        }
        inner.closed = true;
        if let Some(timer) = inner.timer.take() {
            timer.clear();
        }
    }
    let state = ConnectionState::Closed {
        reason: reason.to_string(),
    };
    match ending {
        // Said to the other tabs too: they end with it.
        Ending::Final => set_state(cell, state),
        Ending::HandOver => cell.borrow_mut().show_state(state),
    }
    let (leader, link) = {
        let mut inner = cell.borrow_mut();
        (inner.leader, inner.link.take())
    };
    if let Some(link) = link {
        let grace = (ending == Ending::Final).then_some(FINAL_GRACE);
        link.leave(leader && ending == Ending::HandOver, grace);
    }
}
