//! Sockets that notice stalls, and remember how they ended.
//!
//! An SSE response body cannot see its socket: when the browser stops
//! reading, hyper simply stops asking the stream for more, so the stream
//! cannot time out by itself. [`WatchedListener`] wraps each accepted
//! socket in a [`WatchedIo`] that fails a write which has made no progress
//! for `client_timeout`, which makes hyper drop the connection (and with
//! it the stream and its registry entry). The way the socket ended is
//! recorded, in the socket's own terms ([`SocketEnd`]), in a
//! [`SocketState`] that handlers receive through axum's `ConnectInfo`
//! (inserted by [`super::serve`]); the SSE layer turns it into the reason
//! it logs.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::serve::Listener;
use bytes::Bytes;
use futures::task::AtomicWaker;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Sleep;

use crate::tcp::SharedTcp;
use crate::turn::{Claimed, WriteTurn};

/// How a socket ended, as seen from the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum SocketEnd {
    /// The peer closed its side, or reading failed.
    PeerClosed = 1,
    /// A write failed.
    WriteFailed = 2,
    /// A write made no progress for the write timeout.
    WriteStalled = 3,
    /// A write was failed on purpose ([`SocketState::abort_stalled_writes`]).
    Aborted = 4,
    /// The peer sent more than the connection allows (e.g. bytes after
    /// the request of a response that reads nothing).
    UnexpectedInput = 5,
}

impl SocketEnd {
    fn from_u8(n: u8) -> Option<Self> {
        Some(match n {
            1 => Self::PeerClosed,
            2 => Self::WriteFailed,
            3 => Self::WriteStalled,
            4 => Self::Aborted,
            5 => Self::UnexpectedInput,
            _ => return None,
        })
    }
}

/// How a socket ended, as far as the socket can tell; and the switch that
/// ends it at once.
#[derive(Debug, Default)]
pub struct SocketState {
    ended: AtomicU8,
    /// Set by [`SocketState::abort_stalled_writes`].
    aborted: AtomicBool,
    /// The task whose write is waiting for room in the socket (or, on an
    /// event stream, for its write turn).
    writer: AtomicWaker,
    /// Who writes next, on an event stream served directly ([`crate::turn`]).
    turn: WriteTurn,
}

impl SocketState {
    /// From now on, a write that cannot proceed at once fails instead of
    /// waiting, and the socket is reset when dropped, which frees its
    /// kernel send buffer at once. For a stream the registry ended (a
    /// client fallen behind, kicked): otherwise its connection would hold
    /// its unsent bytes until `client_timeout`.
    pub fn abort_stalled_writes(&self) {
        self.aborted.store(true, Ordering::Release);
        self.writer.wake();
    }

    /// Records `end` unless an earlier one was recorded.
    pub(crate) fn record(&self, end: SocketEnd) {
        let _ = self
            .ended
            .compare_exchange(0, end as u8, Ordering::AcqRel, Ordering::Acquire);
    }

    /// How the socket ended, once it did.
    pub fn ended(&self) -> Option<SocketEnd> {
        SocketEnd::from_u8(self.ended.load(Ordering::Acquire))
    }

    /// Takes the write turn of an event stream whose task has nothing in
    /// flight, so that the caller may write a chunk from where it is
    /// ([`SocketState::write_claimed`], or [`SocketState::hand_back`]:
    /// one of them must follow). `false` when the turn is not open (the
    /// task is writing, another caller holds it, the stream is not served
    /// directly, or it is ending).
    pub fn try_claim(&self) -> bool {
        !self.aborted.load(Ordering::Acquire) && self.ended().is_none() && self.turn.try_claim()
    }

    /// Whether a caller holds the turn: whatever it queues for the stream
    /// meanwhile, it writes (or hands to the task) when done.
    pub fn is_claimed(&self) -> bool {
        self.turn.is_claimed()
    }

    /// With the turn claimed: writes `frames` as one chunk (one `writev`)
    /// without waiting, and gives the turn back: open again if the
    /// chunk went out whole and `more` is false, else to the stream's
    /// task, which is woken (it writes the rest of a partial chunk first).
    /// A socket aborted or ended meanwhile gets nothing (`Failed`; the
    /// turn goes to the task, which ends).
    pub fn write_claimed<'a>(&self, frames: impl Iterator<Item = &'a [u8]>, more: bool) -> Claimed {
        if self.aborted.load(Ordering::Acquire) || self.ended().is_some() {
            self.turn.hand_back(&self.writer);
            return Claimed::Failed;
        }
        self.turn.write_claimed(frames, more, &self.writer)
    }

    /// Gives a claimed turn to the stream's task without writing.
    pub fn hand_back(&self) {
        self.turn.hand_back(&self.writer);
    }

    /// The task takes the turn (see [`WriteTurn::poll_take`]).
    pub(crate) fn poll_turn(&self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        self.turn.poll_take(&self.writer, cx)
    }

    /// The task has nothing in flight: the turn is open to callers.
    pub(crate) fn open_turn(&self, cx: &mut Context<'_>) {
        self.turn.open(&self.writer, cx);
    }

    /// The stream ended: nobody else writes to the socket.
    pub(crate) fn close_turn(&self) {
        self.turn.close();
    }
}

/// A socket whose writes time out after `timeout` without progress.
pub struct WatchedIo<T> {
    inner: T,
    timeout: Duration,
    /// Armed on the first write that cannot proceed, disarmed by progress.
    /// Boxed and only while stalled, so idle sockets carry no timer.
    stall: Option<Pin<Box<Sleep>>>,
    state: Arc<SocketState>,
}

/// A socket that can be made to reset (RST) rather than close gracefully
/// (FIN after its unsent data) when dropped.
pub trait ResetOnDrop {
    fn reset_on_drop(&self);
}

impl ResetOnDrop for TcpStream {
    fn reset_on_drop(&self) {
        if let Err(e) = self.set_zero_linger() {
            tracing::debug!("cannot set SO_LINGER 0: {e}");
        }
    }
}

impl<T> WatchedIo<T> {
    pub fn new(inner: T, timeout: Duration) -> Self {
        WatchedIo {
            inner,
            timeout,
            stall: None,
            state: Arc::default(),
        }
    }

    pub fn state(&self) -> &Arc<SocketState> {
        &self.state
    }

    pub fn get_ref(&self) -> &T {
        &self.inner
    }
}

impl WatchedIo<SharedTcp> {
    /// A watched socket whose event streams can be written by a caller
    /// holding their write turn ([`SocketState::try_claim`]).
    pub fn shared(stream: TcpStream, timeout: Duration) -> Self {
        let inner = SharedTcp::new(stream);
        let state = SocketState {
            turn: WriteTurn::new(Arc::downgrade(&inner.0)),
            ..SocketState::default()
        };
        WatchedIo {
            inner,
            timeout,
            stall: None,
            state: Arc::new(state),
        }
    }
}

impl<T: ResetOnDrop> WatchedIo<T> {
    /// Turns the outcome of a write into the outcome the caller sees.
    fn after_write(
        &mut self,
        cx: &mut Context<'_>,
        result: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        if result.is_pending() {
            // Registered before the check: an abort in between still wakes.
            self.state.writer.register(cx.waker());
            if self.state.aborted.load(Ordering::Acquire) {
                self.inner.reset_on_drop();
                self.state.record(SocketEnd::Aborted);
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    "the stream was ended while the socket was full",
                )));
            }
        }
        match result {
            Poll::Ready(Ok(n)) => {
                self.stall = None;
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => {
                self.state.record(SocketEnd::WriteFailed);
                Poll::Ready(Err(e))
            }
            Poll::Pending => {
                let timeout = self.timeout;
                let stall = self
                    .stall
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                ready!(stall.as_mut().poll(cx));
                self.state.record(SocketEnd::WriteStalled);
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("socket accepted no data for {timeout:?}"),
                )))
            }
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for WatchedIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = ready!(Pin::new(&mut self.inner).poll_read(cx, buf));
        match &result {
            Ok(()) if buf.filled().len() == before && buf.remaining() > 0 => {
                self.state.record(SocketEnd::PeerClosed);
            }
            Err(_) => self.state.record(SocketEnd::PeerClosed),
            Ok(()) => {}
        }
        Poll::Ready(result)
    }
}

impl<T: AsyncWrite + ResetOnDrop + Unpin> AsyncWrite for WatchedIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.after_write(cx, result)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.after_write(cx, result)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A TCP listener whose sockets are [`WatchedIo`]s with `TCP_NODELAY` set
/// (events are small and should leave at once).
pub struct WatchedListener {
    inner: TcpListener,
    timeout: Duration,
}

impl WatchedListener {
    pub fn new(inner: TcpListener, write_timeout: Duration) -> Self {
        WatchedListener {
            inner,
            timeout: write_timeout,
        }
    }
}

impl Listener for WatchedListener {
    type Io = WatchedIo<SharedTcp>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.inner.accept().await {
                Ok((stream, addr)) => {
                    if let Err(e) = stream.set_nodelay(true) {
                        tracing::debug!(%addr, "cannot set TCP_NODELAY: {e}");
                    }
                    return (WatchedIo::shared(stream, self.timeout), addr);
                }
                Err(e) if is_per_connection_error(&e) => {}
                Err(e) => {
                    // Out of file descriptors or memory: wait instead of
                    // spinning; open connections may close meanwhile.
                    tracing::error!("accept failed: {e}; retrying in 1 s");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

fn is_per_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// What a handler learns about its connection: the peer and the socket's
/// state. Extract it as `ConnectInfo<ConnInfo>`.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    pub socket: Arc<SocketState>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_write_the_peer_never_reads_times_out() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // The peer connects and never reads.
        let _peer = TcpStream::connect(addr).await.unwrap();
        let (server_side, _) = listener.accept().await.unwrap();
        let mut io = WatchedIo::new(server_side, Duration::from_millis(200));
        let chunk = vec![0u8; 64 * 1024];
        let err = loop {
            match io.write(&chunk).await {
                Ok(_) => continue,
                Err(e) => break e,
            }
        };
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(io.state().ended(), Some(SocketEnd::WriteStalled));
    }

    #[tokio::test]
    async fn an_abort_fails_a_stalled_write_at_once() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let _peer = TcpStream::connect(addr).await.unwrap();
        let (server_side, _) = listener.accept().await.unwrap();
        let mut io = WatchedIo::new(server_side, Duration::from_secs(60));
        let state = io.state().clone();
        let writer = tokio::spawn(async move {
            let chunk = vec![0u8; 64 * 1024];
            loop {
                if let Err(e) = io.write(&chunk).await {
                    return e;
                }
            }
        });
        // Let the socket fill up and the write wait.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            !writer.is_finished(),
            "the peer reads nothing: the write must wait"
        );
        state.abort_stalled_writes();
        let err = tokio::time::timeout(Duration::from_secs(2), writer)
            .await
            .expect("the stalled write fails at once, not after the 60 s timeout")
            .unwrap();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionAborted);
        assert_eq!(state.ended(), Some(SocketEnd::Aborted));
    }

    #[tokio::test]
    async fn peer_close_is_recorded_as_client_closed() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let peer = TcpStream::connect(addr).await.unwrap();
        let (server_side, _) = listener.accept().await.unwrap();
        let mut io = WatchedIo::new(server_side, Duration::from_secs(5));
        drop(peer);
        let mut buf = [0u8; 16];
        let n = io.read(&mut buf).await.unwrap_or(0);
        assert_eq!(n, 0);
        assert_eq!(io.state().ended(), Some(SocketEnd::PeerClosed));
    }
}
