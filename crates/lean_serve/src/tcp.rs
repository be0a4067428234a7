//! A TCP socket that a connection's task and a publisher can both write.
//!
//! The task owns the connection as usual; [`crate::SocketState`] keeps a
//! weak handle so that a publisher holding the stream's write turn (see
//! [`crate::turn`]) can write a chunk without going through the task.
//! Only `&TcpStream` methods are used, so both sides stay safe code.

use std::io::{self, IoSlice};
use std::net::Shutdown;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::socket::ResetOnDrop;

/// An accepted socket, shared with its [`crate::SocketState`].
#[derive(Debug)]
pub struct SharedTcp(pub(crate) Arc<TcpStream>);

impl SharedTcp {
    pub fn new(stream: TcpStream) -> Self {
        SharedTcp(Arc::new(stream))
    }

    pub fn get_ref(&self) -> &TcpStream {
        &self.0
    }
}

impl ResetOnDrop for SharedTcp {
    fn reset_on_drop(&self) {
        self.0.reset_on_drop();
    }
}

/// Retries `op` while the socket says it is ready but the call would
/// block (readiness is a hint: another writer may have filled it).
fn retry_ready<T>(
    mut ready: impl FnMut() -> Poll<io::Result<()>>,
    mut op: impl FnMut() -> io::Result<T>,
) -> Poll<io::Result<T>> {
    loop {
        ready!(ready())?;
        match op() {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            other => return Poll::Ready(other),
        }
    }
}

impl AsyncRead for SharedTcp {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let stream = &*self.0;
        // Reads into the buffer's spare room as it is (no zeroing first).
        ready!(retry_ready(
            || stream.poll_read_ready(cx),
            || stream.try_read_buf(buf),
        ))?;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for SharedTcp {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let stream = &*self.0;
        retry_ready(|| stream.poll_write_ready(cx), || stream.try_write(data))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let stream = &*self.0;
        retry_ready(
            || stream.poll_write_ready(cx),
            || stream.try_write_vectored(bufs),
        )
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let result = socket2::SockRef::from(&*self.0).shutdown(Shutdown::Write);
        match result {
            // Already closed by the peer: nothing left to shut.
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Poll::Ready(Ok(())),
            other => Poll::Ready(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    #[tokio::test]
    async fn reads_writes_and_shuts_down_like_the_socket_it_wraps() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut peer = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        let mut shared = SharedTcp::new(accepted);
        peer.write_all(b"ping").await.unwrap();
        let mut got = [0u8; 4];
        shared.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"ping");
        shared
            .write_all_buf(&mut &b"pong and more"[..])
            .await
            .unwrap();
        shared.shutdown().await.unwrap();
        let mut answer = Vec::new();
        peer.read_to_end(&mut answer).await.unwrap();
        assert_eq!(answer, b"pong and more");
    }
}
