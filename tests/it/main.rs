//! The integration suites, as one test binary: one link instead of one per
//! suite (linking is the slow part of a test build on a 2-core machine).
//! Each suite is a module; `support` is what they share: the real server
//! on an ephemeral port and an SSE parser that reads a stream as browsers
//! do.

mod auth;
mod bus_cost;
mod cluster;
mod connections;
mod inbox;
mod openapi;
mod ops;
mod plain_axum;
mod presence;
mod process;
mod python_examples;
mod replay;
mod restart;
mod resume_isolation;
mod roles;
mod server;
mod service;
mod side_by_side;
mod sse;
mod stream_sessions;
mod support;
