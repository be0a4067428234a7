//! `use_sse`: the browser side of the stream, as reactive signals.
//!
//! One `EventSource` per call, opened only in the browser (on the server the
//! handle is inert, so server-rendered HTML and hydration agree). The
//! browser's own retry covers network blips; when the browser gives up (the
//! server answered 401/429/503, or refused while restarting) the hook
//! reconnects with exponential backoff and jitter, and stops for good on
//! 401. Everything is closed when the owning component is cleaned up.
//!
//! ```ignore
//! let sse = use_sse(SseOptions::default().tag("page", "home"));
//! sse.on::<Notification>(move |n| set_latest.set(n.message));
//! view! { <p>{move || sse.state.get().label()}</p> }
//! ```

use std::time::Duration;

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use super::event::SseEvent;

/// How to connect and reconnect.
#[derive(Clone, Debug, PartialEq)]
pub struct SseOptions {
    pub url: String,
    /// `key:value` tags sent as `?tag=` (for targeting).
    pub tags: Vec<String>,
    pub auto_reconnect: bool,
    /// First backoff delay after the browser gave up.
    pub reconnect_interval: Duration,
    /// Backoff ceiling.
    pub max_reconnect_interval: Duration,
    /// `None`: try forever.
    pub max_reconnect_attempts: Option<u32>,
    pub backoff_factor: f64,
    /// 0.0 to 1.0: each delay is moved randomly by up to this fraction.
    pub jitter: f64,
}

impl Default for SseOptions {
    fn default() -> Self {
        SseOptions {
            url: "/api/sse".into(),
            tags: Vec::new(),
            auto_reconnect: true,
            reconnect_interval: Duration::from_secs(1),
            max_reconnect_interval: Duration::from_secs(30),
            max_reconnect_attempts: None,
            backoff_factor: 2.0,
            jitter: 0.3,
        }
    }
}

impl SseOptions {
    pub fn tag(mut self, key: &str, value: &str) -> Self {
        self.tags.push(format!("{key}:{value}"));
        self
    }

    /// The URL with the tags as query parameters.
    pub fn full_url(&self) -> String {
        let mut url = self.url.clone();
        for (i, tag) in self.tags.iter().enumerate() {
            url.push(if i == 0 && !url.contains('?') {
                '?'
            } else {
                '&'
            });
            url.push_str("tag=");
            url.push_str(&percent_encode(tag));
        }
        url
    }

    /// The delay before reconnect attempt `attempt` (1-based), before jitter.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = self
            .backoff_factor
            .max(1.0)
            .powi(attempt.saturating_sub(1).min(30) as i32);
        let millis = (self.reconnect_interval.as_millis() as f64 * factor)
            .min(self.max_reconnect_interval.as_millis() as f64);
        Duration::from_millis(millis as u64)
    }
}

fn percent_encode(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Where the connection is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConnectionState {
    Connecting,
    Open,
    /// Waiting to reconnect; `attempt` counts since the last open.
    Reconnecting {
        attempt: u32,
    },
    Closed {
        reason: String,
    },
}

impl ConnectionState {
    /// In words, for people.
    pub fn label(&self) -> String {
        match self {
            ConnectionState::Connecting => "Connecting…".into(),
            ConnectionState::Open => "Connected".into(),
            ConnectionState::Reconnecting { attempt } => {
                format!("Reconnecting… (attempt {attempt})")
            }
            ConnectionState::Closed { reason } => format!("Disconnected: {reason}"),
        }
    }
}

/// One received event, as the browser saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawEvent {
    pub name: String,
    pub id: Option<String>,
    pub data: String,
    /// Unix milliseconds when it arrived.
    pub received_at: u64,
}

/// Removes a listener when called (or when its component is cleaned up).
pub struct Unsubscribe(Option<Box<dyn FnOnce()>>);

impl Unsubscribe {
    pub fn unsubscribe(mut self) {
        if let Some(f) = self.0.take() {
            f();
        }
    }
}

/// What [`use_sse`] returns: signals to read, listeners to add. `Copy`.
#[derive(Clone, Copy)]
pub struct SseHandle {
    pub state: ReadSignal<ConnectionState>,
    pub last_event: ReadSignal<Option<RawEvent>>,
    /// The last payload that could not be decoded, and why.
    pub decode_error: ReadSignal<Option<String>>,
    /// This connection's id, from the server's `connected` event.
    pub client_id: ReadSignal<Option<String>>,
    set_decode_error: WriteSignal<Option<String>>,
    #[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
    browser: BrowserStore,
}

/// The browser state: thread-local in the browser; on the server (where
/// it is empty) thread-safe, as a server render may end on another thread.
#[cfg(feature = "hydrate")]
type BrowserStore = StoredValue<Option<browser::Shared>, LocalStorage>;
#[cfg(not(feature = "hydrate"))]
type BrowserStore = StoredValue<Option<browser::Shared>>;

impl SseHandle {
    /// Calls `f` with every `T` received under `T::NAME`.
    pub fn on<T: SseEvent + 'static>(&self, f: impl Fn(T) + 'static) -> Unsubscribe {
        let set_error = self.set_decode_error;
        self.add_event_listener(T::NAME, move |raw| {
            match serde_json::from_str::<T>(&raw.data) {
                Ok(value) => f(value),
                Err(e) => {
                    let message = format!("cannot decode {:?} event: {e}", raw.name);
                    leptos::logging::warn!("{message}");
                    set_error.set(Some(message));
                }
            }
        })
    }

    /// Calls `f` with every event named `name`, undecoded.
    #[cfg_attr(not(feature = "hydrate"), allow(unused_variables))]
    pub fn add_event_listener(&self, name: &str, f: impl Fn(&RawEvent) + 'static) -> Unsubscribe {
        #[cfg(feature = "hydrate")]
        if let Some(shared) = self.browser.get_value() {
            let remove = browser::listen(&shared, name, std::rc::Rc::new(f));
            let remove = std::rc::Rc::new(std::cell::Cell::new(Some(remove)));
            let on_cleanup_remove = send_wrapper::SendWrapper::new(remove.clone());
            if Owner::current().is_some() {
                on_cleanup(move || {
                    if let Some(f) = std::cell::Cell::take(&on_cleanup_remove) {
                        f();
                    }
                });
            }
            return Unsubscribe(Some(Box::new(move || {
                if let Some(f) = remove.take() {
                    f();
                }
            })));
        }
        Unsubscribe(None)
    }

    /// Closes the stream for good.
    pub fn close(&self) {
        #[cfg(feature = "hydrate")]
        if let Some(shared) = self.browser.get_value() {
            browser::close(&shared, "closed by the page");
        }
    }
}

/// Opens the stream (in the browser) and returns its handle.
pub fn use_sse(options: SseOptions) -> SseHandle {
    let (state, set_state) = signal(ConnectionState::Connecting);
    let (last_event, set_last_event) = signal(None::<RawEvent>);
    let (decode_error, set_decode_error) = signal(None::<String>);
    let (client_id, set_client_id) = signal(None::<String>);
    let writers = Writers {
        state: set_state,
        last_event: set_last_event,
        client_id: set_client_id,
    };
    #[cfg(feature = "hydrate")]
    let shared = Some(browser::start(options, writers));
    #[cfg(not(feature = "hydrate"))]
    let shared = {
        let _ = (options, writers);
        None
    };
    #[cfg(feature = "hydrate")]
    if let Some(shared) = shared.clone() {
        let shared = send_wrapper::SendWrapper::new(shared);
        on_cleanup(move || browser::close(&shared, "page left"));
    }
    SseHandle {
        state,
        last_event,
        decode_error,
        client_id,
        set_decode_error,
        #[cfg(feature = "hydrate")]
        browser: StoredValue::new_local(shared),
        #[cfg(not(feature = "hydrate"))]
        browser: StoredValue::new(shared),
    }
}

#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
struct Writers {
    state: WriteSignal<ConnectionState>,
    last_event: WriteSignal<Option<RawEvent>>,
    client_id: WriteSignal<Option<String>>,
}

#[cfg(not(feature = "hydrate"))]
mod browser {
    /// Nothing runs on the server.
    pub type Shared = ();
}

#[cfg(feature = "hydrate")]
mod browser {
    //! The `EventSource`, its listeners and the reconnect timer.

    use std::cell::RefCell;
    use std::collections::HashMap;
    use std::rc::Rc;
    use std::time::Duration;

    use leptos::prelude::*;
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
    }

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

    /// Opens a new `EventSource` with every known listener attached.
    fn open(shared: &Shared) {
        let url = shared.borrow().options.full_url();
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
        // Built-in: the client id.
        attach(shared, &source, "connected");
        let names: Vec<String> = shared.borrow().listeners.keys().cloned().collect();
        for name in names {
            if name != "connected" {
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
            let listeners: Vec<Listener> = {
                let inner = shared.borrow();
                if raw.name == "connected" {
                    let id = serde_json::from_str::<serde_json::Value>(&raw.data)
                        .ok()
                        .and_then(|v| v["clientId"].as_str().map(str::to_string));
                    inner.writers.client_id.set(id);
                } else {
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
        if let Err(e) =
            source.add_event_listener_with_callback(name, callback.as_ref().unchecked_ref())
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
            && name != "connected"
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

    /// The source reported an error: either the browser is retrying by
    /// itself (network blip), or it gave up and reconnecting is ours.
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
        if !gave_up {
            return;
        }
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
            let base = options.backoff(attempt);
            let spread = base.as_millis() as f64 * options.jitter.clamp(0.0, 1.0);
            let delay =
                (base.as_millis() as f64 + spread * (2.0 * js_sys::Math::random() - 1.0)).max(0.0);
            let again = Rc::downgrade(&shared);
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
        });
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let options = SseOptions::default();
        assert_eq!(options.backoff(1), Duration::from_secs(1));
        assert_eq!(options.backoff(2), Duration::from_secs(2));
        assert_eq!(options.backoff(3), Duration::from_secs(4));
        assert_eq!(options.backoff(10), Duration::from_secs(30));
        assert_eq!(options.backoff(1000), Duration::from_secs(30));
    }

    #[test]
    fn tags_become_query_parameters() {
        let options = SseOptions::default().tag("page", "home").tag("lang", "en");
        assert_eq!(options.full_url(), "/api/sse?tag=page:home&tag=lang:en");
    }

    #[test]
    fn states_read_in_words() {
        assert_eq!(ConnectionState::Open.label(), "Connected");
        assert_eq!(
            ConnectionState::Reconnecting { attempt: 2 }.label(),
            "Reconnecting… (attempt 2)"
        );
    }
}
