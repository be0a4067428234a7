//! One client's stream: the `retry:`/`connected` preamble, queued events,
//! heartbeats, and the end of the connection.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use tokio::time::{Interval, MissedTickBehavior};

use super::event::{EventName, write_frame};
use super::event_id::StreamId;
use super::registry::{DisconnectReason, Next, Registration};
use super::target::ClientId;
use crate::socket::WatchedSocket;

/// The comment line sent every `ping_interval`.
const PING: &[u8] = b": ping\n\n";
/// A replay is sent in chunks of at most about this size (queued events
/// go one by one, shared; the server's writer gathers them).
const MAX_BATCH_BYTES: usize = 64 * 1024;

/// The first bytes of every stream: how long to wait before reconnecting,
/// and a `connected` event with the client's id. Its event id is where
/// the stream starts (see [`Registration::start`]): a browser that
/// reconnects before any other event arrived still resumes from there.
pub(crate) fn preamble(client: ClientId, retry: Duration, start: &StreamId) -> Bytes {
    let mut out = format!("retry: {}\n", retry.as_millis()).into_bytes();
    let name = EventName::reserved("connected");
    let data = format!(r#"{{"clientId":"{client}"}}"#);
    write_frame(&mut out, Some(&start.to_string()), &name, &data);
    Bytes::from(out)
}

/// The response body of `GET /api/sse` for an admitted client. A plain
/// `Stream` rather than an async block: a poll is one check of the
/// client's link (end reason, then queue) and of the heartbeat timer, and
/// nothing is rebuilt per event.
pub(crate) struct EventStream {
    registration: Registration,
    socket: Option<Arc<dyn WatchedSocket>>,
    ping: Interval,
    preamble: Option<Bytes>,
    /// When the stream token it was opened with expires (token streams
    /// only: boxed, so a cookie stream carries one empty word).
    expiry: Option<Pin<Box<tokio::time::Sleep>>>,
    expired: bool,
    /// Keeps this process reading the user's events while the stream is
    /// open (the bus's own-clients read; one word).
    _following: crate::bus::Following,
}

impl Drop for EventStream {
    /// Records how the connection ended before the guard (dropped right
    /// after) logs it: a reason set by the registry wins, then what the
    /// socket saw; a body dropped for any other cause means the client went.
    fn drop(&mut self) {
        let seen = if self.expired {
            DisconnectReason::TokenExpired
        } else {
            self.socket
                .as_ref()
                .and_then(|s| s.ended())
                .unwrap_or(DisconnectReason::ClientClosed)
        };
        self.registration.finish(seen);
    }
}

pub(crate) fn event_stream(
    registration: Registration,
    socket: Option<Arc<dyn WatchedSocket>>,
    ping_interval: Duration,
    retry: Duration,
    expires_in: Option<Duration>,
    following: crate::bus::Following,
) -> EventStream {
    let mut ping =
        tokio::time::interval_at(tokio::time::Instant::now() + ping_interval, ping_interval);
    ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
    EventStream {
        preamble: Some(preamble(registration.id(), retry, &registration.start_id())),
        registration,
        socket,
        ping,
        expiry: expires_in.map(|after| Box::pin(tokio::time::sleep(after))),
        expired: false,
        _following: following,
    }
}

/// The last frame of a drained stream: reconnect after `retry` ± half,
/// at random, so that the clients of a drained server do not all come
/// back in the same instant. Both as `retry:` (for any `EventSource`) and
/// as an `sse-drain` event (`use_sse` reconnects by itself, and a page
/// cannot read `retry:`).
fn drain_frame(retry: Duration) -> Bytes {
    use rand::Rng;
    let base = retry.as_millis().max(2) as u64;
    let jittered = rand::thread_rng().gen_range(base / 2..=base + base / 2);
    let mut out = format!("retry: {jittered}\n").into_bytes();
    let data = format!(r#"{{"retry":{jittered}}}"#);
    write_frame(&mut out, None, &EventName::reserved("sse-drain"), &data);
    Bytes::from(out)
}

impl EventStream {
    /// Until when (Unix ms) publishers may write this stream's events
    /// themselves: its token's expiry, after which nothing more is sent.
    fn direct_until(&self) -> u64 {
        match &self.expiry {
            None => u64::MAX,
            Some(expiry) => {
                let left = expiry
                    .deadline()
                    .saturating_duration_since(tokio::time::Instant::now());
                crate::clock::unix_millis_now().saturating_add(left.as_millis() as u64)
            }
        }
    }
}

impl Stream for EventStream {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if let Some(first) = this.preamble.take() {
            return Poll::Ready(Some(Ok(first)));
        }
        if this.registration.finished {
            return Poll::Ready(None);
        }
        if let Some(expiry) = &mut this.expiry
            && expiry.as_mut().poll(cx).is_ready()
        {
            // The token no longer vouches for the reader: nothing more is
            // sent, queued events included.
            this.expired = true;
            this.registration.finished = true;
            return Poll::Ready(None);
        }
        match this.registration.poll_batch(cx, MAX_BATCH_BYTES) {
            Poll::Ready(Next::End(reason)) => {
                this.registration.in_span(|| {
                    tracing::debug!(target: super::STREAM_LOG, client = %this.registration.id(),
                        reason = reason.label(), "ending stream");
                });
                if reason == DisconnectReason::Drained {
                    this.registration.finished = true;
                    return Poll::Ready(Some(Ok(drain_frame(this.registration.retry()))));
                }
                return Poll::Ready(None);
            }
            Poll::Ready(Next::Write(batch)) => return Poll::Ready(Some(Ok(batch))),
            Poll::Pending => {
                if !this.registration.is_direct() {
                    let until = this.direct_until();
                    this.registration.go_direct(until);
                }
            }
        }
        match this.ping.poll_tick(cx) {
            Poll::Ready(_) => Poll::Ready(Some(Ok(Bytes::from_static(PING)))),
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preamble_sets_retry_and_announces_the_client() {
        let client = ClientId::parse("5f0c3d56-8a4e-4e53-9d5f-4f1c0b2a7e11").unwrap();
        let start = StreamId::new(
            crate::event_id::EventId {
                epoch: crate::event_id::Epoch::from_u64(0xab),
                position: crate::event_id::Position::new(12, 0),
            },
            Some(crate::event_id::InboxSeq(4)),
        );
        let text =
            String::from_utf8(preamble(client, Duration::from_millis(2500), &start).to_vec())
                .unwrap();
        assert_eq!(
            text,
            "retry: 2500\nid: 00000000000000ab-12-0.4\nevent: connected\ndata: {\"clientId\":\"5f0c3d56-8a4e-4e53-9d5f-4f1c0b2a7e11\"}\n\n"
        );
    }
}
