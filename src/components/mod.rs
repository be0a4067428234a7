//! Reusable views.

pub mod inbox_list;
pub mod rooms;
pub mod track_connections;
pub mod unread;

pub use inbox_list::InboxList;
pub use rooms::Rooms;
pub use track_connections::TrackConnections;
pub use unread::UnreadBadge;

/// A Unix-milliseconds time as the reader's local clock time (UTC on the
/// server, where nothing time-dependent is rendered).
pub fn clock(unix_ms: u64) -> String {
    #[cfg(feature = "hydrate")]
    {
        let date = js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(unix_ms as f64));
        format!(
            "{:02}:{:02}:{:02}",
            date.get_hours(),
            date.get_minutes(),
            date.get_seconds()
        )
    }
    #[cfg(not(feature = "hydrate"))]
    {
        let secs = unix_ms / 1000;
        format!(
            "{:02}:{:02}:{:02} UTC",
            (secs / 3600) % 24,
            (secs / 60) % 60,
            secs % 60
        )
    }
}
