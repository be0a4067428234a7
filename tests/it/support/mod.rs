//! What the integration tests share, one job a file: the server
//! ([`server`]), Postgres databases ([`postgres`]), accounts and signed-in
//! browsers ([`accounts`]), a service's requests ([`service`]), and the SSE
//! client ([`stream`]).

mod accounts;
mod metrics;
mod postgres;
mod server;
mod service;
mod stream;

pub use accounts::*;
pub use metrics::*;
pub use postgres::*;
pub use server::*;
pub use service::*;
pub use stream::*;
