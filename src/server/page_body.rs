//! Pages are rendered to the end even when their client goes away.
//!
//! Dropping a page body half-way tears down the render's reactive owner
//! while tasks of the same render may still be looking up context in it
//! on another thread. In reactive_graph 0.2.16 (leptos 0.8) that lookup
//! holds a read lock on an owner while it drops an owner reference; if
//! that reference was the last one, the drop takes the write lock of the
//! same owner: the worker thread deadlocks (and a process with a wedged
//! worker could not shut down). Fixed upstream only in the 0.9 release
//! candidates. So an abandoned page body is not dropped: it is handed to
//! a task that reads it to its end (bounded in time) and drops it then,
//! when the render's tasks are done.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;
use http_body_util::BodyExt;
use hyper::body::{Body as HttpBody, Frame, SizeHint};

/// How long an abandoned render may take to finish in the background.
const FINISH_WITHIN: Duration = Duration::from_secs(10);

/// Wraps HTML responses so that they are never dropped half-rendered.
pub async fn finish_abandoned_pages(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let is_html = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    if !is_html || response.body().is_end_stream() {
        return response;
    }
    response.map(|body| Body::new(FinishOnDrop { inner: Some(body) }))
}

struct FinishOnDrop {
    /// `None` once read to the end.
    inner: Option<Body>,
}

impl HttpBody for FinishOnDrop {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let next = Pin::new(inner).poll_frame(cx);
        if matches!(next, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
            self.inner = None;
        }
        next
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(HttpBody::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), HttpBody::size_hint)
    }
}

impl Drop for FinishOnDrop {
    fn drop(&mut self) {
        let Some(mut body) = self.inner.take() else {
            return;
        };
        if body.is_end_stream() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            let finish = async { while let Some(Ok(_)) = body.frame().await {} };
            if tokio::time::timeout(FINISH_WITHIN, finish).await.is_err() {
                tracing::debug!(
                    "an abandoned page did not finish rendering within {FINISH_WITHIN:?}"
                );
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Counts the chunks pulled out of it.
    fn counted(chunks: usize, pulled: Arc<AtomicUsize>) -> Body {
        let stream = futures::stream::iter(0..chunks).then(move |n| {
            let pulled = pulled.clone();
            async move {
                tokio::task::yield_now().await;
                pulled.fetch_add(1, Ordering::SeqCst);
                Ok::<_, std::convert::Infallible>(Bytes::from(n.to_string()))
            }
        });
        Body::from_stream(stream)
    }

    use futures::StreamExt;

    #[tokio::test]
    async fn a_body_dropped_half_way_is_read_to_its_end() {
        let pulled = Arc::new(AtomicUsize::new(0));
        let mut body = Body::new(FinishOnDrop {
            inner: Some(counted(5, pulled.clone())),
        });
        assert!(body.frame().await.is_some());
        drop(body);
        for _ in 0..100 {
            if pulled.load(Ordering::SeqCst) == 5 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!(
            "only {} of 5 chunks were read",
            pulled.load(Ordering::SeqCst)
        );
    }
}
