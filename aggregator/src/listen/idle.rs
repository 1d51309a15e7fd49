//! Open streams per connection, for the idle timeout of the gRPC listeners.
//!
//! hyper's HTTP/2 server has no idle timeout: a client that finished its
//! preface and answers keep-alive pings holds its connection slot forever.
//! Each request counts as an open stream from the moment hyper hands it to
//! the service until its response body has been sent or dropped (a unary
//! call: until its answer is written; a server or bidirectional stream, such
//! as an agent's stream or the live alert stream: for as long as it runs).
//! [`Streams::idle_for`] resolves once no stream has been open for the given
//! time; the connection is then closed gracefully (`GOAWAY`).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use tokio::sync::Notify;

/// The open streams of one connection.
#[derive(Debug, Default)]
pub struct Streams {
    open: AtomicUsize,
    changed: Notify,
}

/// One open stream; dropping it closes it.
#[derive(Debug)]
pub struct StreamGuard(Arc<Streams>);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
        self.0.changed.notify_waiters();
    }
}

impl Streams {
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    /// Counts one more open stream until the guard is dropped.
    pub fn open(self: &Arc<Self>) -> StreamGuard {
        self.open.fetch_add(1, Ordering::AcqRel);
        self.changed.notify_waiters();
        StreamGuard(self.clone())
    }

    /// Streams open now.
    pub fn count(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// Resolves once no stream has been open for `idle` (never while one is).
    pub async fn idle_for(&self, idle: Duration) {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            // Registered before the count is read, so no change is missed.
            changed.as_mut().enable();
            if self.count() > 0 {
                changed.await;
                continue;
            }
            tokio::select! {
                () = tokio::time::sleep(idle) => {
                    if self.count() == 0 {
                        return;
                    }
                }
                () = changed => {}
            }
        }
    }
}

/// A response body that keeps its stream counted as open until it has been
/// sent in full or dropped (client reset, connection closed).
pub struct Tracked {
    pub(super) inner: tonic::body::Body,
    pub(super) _stream: StreamGuard,
}

impl HttpBody for Tracked {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn idle_only_after_the_last_stream_closed_for_the_whole_time() {
        let s = Streams::new();
        let short = Duration::from_millis(100);
        let g = s.open();
        let idle = tokio::time::timeout(Duration::from_millis(300), s.idle_for(short)).await;
        assert!(idle.is_err(), "an open stream is never idle");
        let started = tokio::time::Instant::now();
        let waiter = {
            let s = s.clone();
            tokio::spawn(async move { s.idle_for(short).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(g);
        tokio::time::timeout(Duration::from_secs(2), waiter)
            .await
            .expect("idle once the stream closed")
            .unwrap();
        assert!(
            started.elapsed() >= Duration::from_millis(150),
            "counted from the close"
        );
        // A stream opened and closed while waiting restarts the clock.
        let started = tokio::time::Instant::now();
        let waiter = {
            let s = s.clone();
            tokio::spawn(async move { s.idle_for(short).await })
        };
        tokio::time::sleep(Duration::from_millis(60)).await;
        drop(s.open());
        waiter.await.unwrap();
        assert!(started.elapsed() >= Duration::from_millis(160));
        assert_eq!(s.count(), 0);
    }
}
