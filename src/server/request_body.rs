//! Request bodies are bounded in size and in time: a body over
//! `server.max_body` is answered 413, one that has not fully arrived
//! within `server.body_timeout` (from the end of the head) 408; both with
//! the JSON error shape, whatever the handler made of the cut-off body.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use crate::error::{AppError, ErrorKind};

/// `server.max_body` and `server.body_timeout`.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    pub max: usize,
    pub timeout: Duration,
}

/// How reading a body went, as far as the limits are concerned.
const WITHIN: u8 = 0;
const TOO_LARGE: u8 = 1;
const TOO_SLOW: u8 = 2;

pub async fn limit_body(
    State(limits): State<BodyLimits>,
    request: Request,
    next: Next,
) -> Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|len| len > limits.max as u64) {
        return refusal(TOO_LARGE, limits);
    }
    if request.body().is_end_stream() {
        return next.run(request).await;
    }
    let outcome = Arc::new(AtomicU8::new(WITHIN));
    let request = request.map(|body| {
        Body::new(Bounded {
            inner: body,
            left: limits.max,
            deadline: Box::pin(tokio::time::sleep_until(Instant::now() + limits.timeout)),
            outcome: outcome.clone(),
        })
    });
    let response = next.run(request).await;
    match outcome.load(Ordering::Acquire) {
        WITHIN => response,
        cause => refusal(cause, limits),
    }
}

fn refusal(cause: u8, limits: BodyLimits) -> Response {
    let error = if cause == TOO_LARGE {
        AppError::new(
            ErrorKind::TooLarge,
            "body_too_large",
            format!("the request body is larger than {} bytes", limits.max),
        )
    } else {
        AppError::new(
            ErrorKind::Timeout,
            "body_timeout",
            format!(
                "the request body did not arrive within {:?}",
                limits.timeout
            ),
        )
    };
    let mut response = error.into_response();
    // The rest of the body is not read: the connection cannot carry
    // another request.
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// A body that fails once it has given more than `left` bytes or once
/// the deadline has passed, and says which in `outcome`.
struct Bounded {
    inner: Body,
    left: usize,
    deadline: Pin<Box<Sleep>>,
    outcome: Arc<AtomicU8>,
}

impl Bounded {
    fn fail(&self, cause: u8) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        self.outcome.store(cause, Ordering::Release);
        let text = if cause == TOO_LARGE {
            "request body too large"
        } else {
            "request body too slow"
        };
        Poll::Ready(Some(Err(axum::Error::new(text))))
    }
}

impl HttpBody for Bounded {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    if data.len() > self.left {
                        return self.fail(TOO_LARGE);
                    }
                    self.left -= data.len();
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(other) => Poll::Ready(other),
            Poll::Pending => match self.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => self.fail(TOO_SLOW),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
