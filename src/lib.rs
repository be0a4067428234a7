//! sse_notify: real-time notifications over Server-Sent Events, as one
//! Leptos crate built twice: the server binary (feature `ssr`) and the
//! browser bundle (feature `hydrate`).

pub mod app;
pub mod auth;
pub mod components;
pub mod demo;
pub mod error;
pub mod inbox_api;
pub mod pages;
pub mod rooms;
/// The SSE layer, its own crate ([`axum_sse_notify`]).
pub use axum_sse_notify as sse;

#[cfg(feature = "ssr")]
pub mod admin;
#[cfg(feature = "ssr")]
pub mod config;
#[cfg(feature = "ssr")]
pub mod service_tokens;
/// The connection server, its own crate ([`lean_serve`]).
#[cfg(feature = "ssr")]
pub use lean_serve as http;
#[cfg(feature = "ssr")]
pub mod ops;
#[cfg(feature = "ssr")]
pub mod server;
#[cfg(feature = "ssr")]
pub mod store;

/// Entry point of the WASM bundle: brings the page's islands (the
/// interactive parts, `#[island]`) to life; the rest of the page is plain
/// server-rendered HTML with links and forms that work without it.
#[cfg(feature = "hydrate")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_islands();
}
