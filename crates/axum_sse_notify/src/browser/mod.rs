//! `use_sse`: the browser side of the stream, as reactive signals.
//!
//! Opened only in the browser (on the server the handle is inert, so
//! server-rendered HTML and hydration agree). By default the tabs of one
//! browser that ask for the same stream share one `EventSource`: one tab
//! holds it and passes it on to the others (`tabs`, `tab_talk`), so that a user
//! with many tabs open does not use up the browser's six connections per
//! host. When the stream fails, the hook reconnects with exponential
//! backoff and jitter, resuming after the last event seen, and stops for
//! good on 401. Everything is closed when the owning component is cleaned
//! up.
//!
//! ```ignore
//! let sse = use_sse(SseOptions::default().tag("page", "home"));
//! sse.on::<Notification>(move |n| set_latest.set(n.message));
//! view! { <p>{move || sse.state.get().label()}</p> }
//! ```

use std::time::Duration;

use leptos::prelude::*;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::{Deserialize, Serialize};

use super::event::SseEvent;

/// What `?tag=` values escape: everything but RFC 3986's unreserved
/// characters and the `:` between key and value.
const TAG_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b':');

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
    /// Share one stream with this browser's other tabs that ask for the
    /// same one (same URL, tags and scope). Where the browser cannot
    /// (no Web Locks or `BroadcastChannel`), each tab has its own.
    pub share_tabs: bool,
    /// Tabs share only within one scope. Give it a value that changes
    /// whenever the signed-in identity does (e.g. the user id), so that a
    /// tab never joins a stream opened for another identity.
    pub share_scope: Option<String>,
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
            share_tabs: true,
            share_scope: None,
        }
    }
}

impl SseOptions {
    pub fn tag(mut self, key: &str, value: &str) -> Self {
        self.tags.push(format!("{key}:{value}"));
        self
    }

    /// Whether to share the stream with other tabs (default: yes).
    pub fn share_tabs(mut self, share: bool) -> Self {
        self.share_tabs = share;
        self
    }

    /// Shares only with tabs of the same scope (see the field).
    pub fn share_scope(mut self, scope: impl Into<String>) -> Self {
        self.share_scope = Some(scope.into());
        self
    }

    /// The name of the lock and channel of the tabs sharing this stream:
    /// the same stream (tag order aside) in the same scope, and the same
    /// version of the tabs' protocol.
    pub fn share_key(&self) -> String {
        // In order, each once: an insertion into a short list (at most
        // `sse.max_client_tags`) costs the bundle less than a sort.
        let mut tags: Vec<String> = Vec::with_capacity(self.tags.len());
        for tag in &self.tags {
            if let Err(at) = tags.binary_search(tag) {
                tags.insert(at, tag.clone());
            }
        }
        let stream = SseOptions {
            tags,
            ..self.clone()
        };
        let scope = self.share_scope.as_deref().unwrap_or("");
        format!(
            "sse-notify/1 {} {}",
            utf8_percent_encode(scope, NON_ALPHANUMERIC),
            stream.full_url()
        )
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
            url.extend(utf8_percent_encode(tag, TAG_VALUE));
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
    #[cfg_attr(not(feature = "browser"), allow(dead_code))]
    browser: BrowserStore,
}

/// The browser state: thread-local in the browser; on the server (where
/// it is empty) thread-safe, as a server render may end on another thread.
#[cfg(feature = "browser")]
type BrowserStore = StoredValue<Option<event_source::StreamCell>, LocalStorage>;
#[cfg(not(feature = "browser"))]
type BrowserStore = StoredValue<Option<event_source::StreamCell>>;

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
    #[cfg_attr(not(feature = "browser"), allow(unused_variables))]
    pub fn add_event_listener(&self, name: &str, f: impl Fn(&RawEvent) + 'static) -> Unsubscribe {
        #[cfg(feature = "browser")]
        if let Some(cell) = self.browser.get_value() {
            let remove = event_source::listen(&cell, name, std::rc::Rc::new(f));
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

    /// Stops this handle for good: no more events or states here. A tab
    /// that holds a shared stream hands it over to another tab.
    pub fn close(&self) {
        #[cfg(feature = "browser")]
        if let Some(cell) = self.browser.get_value() {
            event_source::close(&cell, "closed by the page", event_source::Ending::HandOver);
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
    #[cfg(feature = "browser")]
    let cell = {
        let sharing = options.share_tabs;
        let cell = event_source::start(options, writers);
        // Without Web Locks or BroadcastChannel (an insecure context, an
        // old browser), or when asked not to share: a stream of its own.
        if !(sharing && tabs::join(&cell)) {
            event_source::lead(&cell);
        }
        Some(cell)
    };
    #[cfg(not(feature = "browser"))]
    let cell = {
        let _ = (options, writers);
        None
    };
    #[cfg(feature = "browser")]
    if let Some(cell) = cell.clone() {
        let cell = send_wrapper::SendWrapper::new(cell);
        on_cleanup(move || event_source::close(&cell, "page left", event_source::Ending::HandOver));
    }
    SseHandle {
        state,
        last_event,
        decode_error,
        client_id,
        set_decode_error,
        #[cfg(feature = "browser")]
        browser: StoredValue::new_local(cell),
        #[cfg(not(feature = "browser"))]
        browser: StoredValue::new(cell),
    }
}

#[cfg_attr(not(feature = "browser"), allow(dead_code))]
struct Writers {
    state: WriteSignal<ConnectionState>,
    last_event: WriteSignal<Option<RawEvent>>,
    client_id: WriteSignal<Option<String>>,
}

#[cfg(not(feature = "browser"))]
mod event_source {
    /// Nothing runs on the server.
    pub type StreamCell = ();
}

#[cfg(feature = "browser")]
mod event_source;
#[cfg(feature = "browser")]
mod link;
#[cfg(feature = "browser")]
mod lock;
#[cfg(feature = "browser")]
mod tabs;

pub mod tab_talk;

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
    fn tabs_share_a_stream_only_when_they_ask_for_the_same_one() {
        let home = SseOptions::default().tag("page", "home").tag("lang", "en");
        let twice = home.clone().tag("page", "home");
        assert_eq!(home.share_key(), twice.share_key());
        let same = SseOptions::default().tag("lang", "en").tag("page", "home");
        assert_eq!(home.share_key(), same.share_key());
        let other = SseOptions::default().tag("page", "inbox").tag("lang", "en");
        assert_ne!(home.share_key(), other.share_key());
        let alice = home.clone().share_scope("alice");
        assert_ne!(home.share_key(), alice.share_key());
        assert_ne!(
            alice.share_key(),
            home.clone().share_scope("bob").share_key()
        );
        assert_eq!(alice.share_key(), same.share_scope("alice").share_key());
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
