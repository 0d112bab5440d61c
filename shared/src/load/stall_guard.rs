//! A warehouse connection's guard against a stalled network: a stream wrapper that fails the
//! connection when something was sent and nothing has come back for longer than any statement
//! may take (`statement_timeout` plus [`ANSWER_MARGIN`]).
//!
//! TCP keepalive notices a dead peer, not a live one that says nothing: a hung proxy, tunnel or
//! middlebox keeps acknowledging packets while forwarding none. The server itself always answers
//! within `statement_timeout` (it cancels the statement then and says so), so longer silence is
//! the network. A connection with nothing sent since its last answer is idle and never times out.
//! The guard only measures; it never reads or writes on its own.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// How long after `statement_timeout` the client stops waiting for an answer.
pub const ANSWER_MARGIN: Duration = Duration::from_secs(10);

/// The longest a request on a connection with `statement_timeout` may go unanswered.
pub fn answer_limit(statement_timeout: Duration) -> Duration {
    statement_timeout + ANSWER_MARGIN
}

/// `inner`, failing its reads with [`io::ErrorKind::TimedOut`] once a write has gone unanswered
/// for `limit` (see [`answer_limit`]).
#[derive(Debug)]
pub struct StallGuard<S> {
    inner: S,
    limit: Duration,
    /// Runs out `limit` after the latest write that nothing has answered yet.
    unanswered: Option<Pin<Box<Sleep>>>,
}

impl<S> StallGuard<S> {
    /// Guards `inner`: a request unanswered for `limit` fails the connection.
    pub fn new(inner: S, limit: Duration) -> Self {
        StallGuard {
            inner,
            limit,
            unanswered: None,
        }
    }

    fn stalled(&self) -> io::Error {
        io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "the warehouse sent nothing for {} ms after a request (longer than `statement_timeout` + {}s): the network to it stalled; the step is retried",
                self.limit.as_millis(),
                ANSWER_MARGIN.as_secs()
            ),
        )
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for StallGuard<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.unanswered = None;
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(err)) => Poll::Ready(Err(err)),
            Poll::Pending => {
                let stalled = this
                    .unanswered
                    .as_mut()
                    .is_some_and(|deadline| deadline.as_mut().poll(cx).is_ready());
                if stalled {
                    Poll::Ready(Err(this.stalled()))
                } else {
                    Poll::Pending
                }
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for StallGuard<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = written {
            if n > 0 {
                let deadline = Instant::now() + this.limit;
                match this.unanswered.as_mut() {
                    Some(sleep) => sleep.as_mut().reset(deadline),
                    None => this.unanswered = Some(Box::pin(tokio::time::sleep_until(deadline))),
                }
            }
        }
        written
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn an_unanswered_write_times_out_and_an_idle_connection_does_not() {
        let limit = Duration::from_millis(200);
        let (client, mut server) = tokio::io::duplex(64);
        let mut guarded = StallGuard::new(client, limit);
        let mut byte = [0u8; 1];

        // Idle: nothing sent, so silence is no stall.
        let idle = tokio::time::timeout(limit * 3, guarded.read(&mut byte)).await;
        assert!(idle.is_err(), "an idle connection must keep waiting");

        // Answered: the next silence is idle again.
        guarded.write_all(b"q").await.unwrap();
        server.write_all(b"a").await.unwrap();
        guarded.read_exact(&mut byte).await.unwrap();
        let idle = tokio::time::timeout(limit * 3, guarded.read(&mut byte)).await;
        assert!(idle.is_err(), "an answered connection must keep waiting");

        // Unanswered: fails once the limit has passed.
        guarded.write_all(b"q").await.unwrap();
        server.read_exact(&mut byte).await.unwrap();
        let started = Instant::now();
        let err = guarded.read(&mut byte).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= limit / 2);
        assert!(err.to_string().contains("statement_timeout"), "{err}");
    }
}
