//! A TCP proxy for network-fault tests: listens on 127.0.0.1 and a free port, forwards every
//! connection to one upstream address, and does to the traffic what the test says, at runtime:
//! pass it, cut every open connection (a TCP reset, as from a crashed middlebox), stall it (stop
//! forwarding without closing, so both ends hear nothing), or refuse new connections. A cut or a
//! stall can wait until a number of bytes has flowed, so that it lands in the middle of a stream.
//!
//! The proxy only forwards and counts; it never changes a byte. It runs on the test's tokio
//! runtime (use a multi-thread runtime when the test blocks a thread, e.g. on a subprocess), and
//! dropping it closes the listener and every connection.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What the proxy does with traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Forward everything.
    Pass,
    /// Forward nothing, close nothing; new connections are accepted and held the same way.
    Stall,
    /// Reset every new connection at once; open ones pass.
    Refuse,
}

/// A fault that fires once a number of bytes has been forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Armed {
    /// Reset every open connection, then pass again.
    Cut,
    /// Stall from then on, until [`NetProxy::pass`].
    Stall,
}

#[derive(Debug)]
struct State {
    mode: Mode,
    /// The armed fault and the bytes still to forward before it fires.
    armed: Option<(Armed, u64)>,
    /// Bumped by every cut: each connection resets when it changes.
    cut_generation: u64,
    connections: u64,
    resets: u64,
    forwarded: u64,
}

#[derive(Debug)]
struct Shared {
    upstream: String,
    state: Mutex<State>,
    /// Signals every change of `state` to the connections.
    changed: watch::Sender<()>,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // A panicking connection task cannot leave the counters half-written.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn change(&self, edit: impl FnOnce(&mut State)) {
        edit(&mut self.state());
        self.changed.send_replace(());
    }

    /// How many of `wanted` bytes a connection born in cut generation `generation` may forward
    /// now: waits while stalled, fires an armed fault exactly at its byte, and answers `None`
    /// once the connection has been cut.
    async fn admit(&self, generation: u64, wanted: u64) -> Option<u64> {
        let mut changes = self.changed.subscribe();
        loop {
            {
                let mut state = self.state();
                if state.cut_generation != generation {
                    return None;
                }
                if state.mode != Mode::Stall {
                    let allowed = match state.armed {
                        Some((fault, left)) if left <= wanted => {
                            state.armed = None;
                            match fault {
                                Armed::Cut => state.cut_generation += 1,
                                Armed::Stall => state.mode = Mode::Stall,
                            }
                            self.changed.send_replace(());
                            left
                        }
                        Some((fault, left)) => {
                            state.armed = Some((fault, left - wanted));
                            wanted
                        }
                        None => wanted,
                    };
                    state.forwarded += allowed;
                    if allowed > 0 {
                        return Some(allowed);
                    }
                }
            }
            changes.borrow_and_update();
            if changes.changed().await.is_err() {
                return None;
            }
        }
    }
}

/// A running proxy; see the module documentation.
#[derive(Debug)]
pub struct NetProxy {
    port: u16,
    shared: Arc<Shared>,
    listener: JoinHandle<()>,
}

impl NetProxy {
    /// Starts a proxy to `upstream` (`host:port`), passing traffic.
    pub async fn start(upstream: &str) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the proxy to 127.0.0.1")?;
        let port = listener.local_addr()?.port();
        let (changed, _) = watch::channel(());
        let shared = Arc::new(Shared {
            upstream: upstream.to_owned(),
            state: Mutex::new(State {
                mode: Mode::Pass,
                armed: None,
                cut_generation: 0,
                connections: 0,
                resets: 0,
                forwarded: 0,
            }),
            changed,
        });
        let accepting = shared.clone();
        let listener = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                connections.spawn(serve(accepting.clone(), client));
            }
        });
        Ok(NetProxy {
            port,
            shared,
            listener,
        })
    }

    /// The proxy's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port>`, for an HTTP upstream such as the S3 endpoint.
    pub fn http_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Forwards everything again: stalled connections resume where they stopped.
    pub fn pass(&self) {
        self.shared.change(|state| {
            state.mode = Mode::Pass;
            state.armed = None;
        });
    }

    /// Forwards `bytes` more bytes (both directions together), then resets every open
    /// connection — once — and passes again.
    pub fn cut_after(&self, bytes: u64) {
        self.shared.change(|state| {
            state.mode = Mode::Pass;
            state.armed = Some((Armed::Cut, bytes));
        });
    }

    /// Stops forwarding now, on open and new connections, until [`NetProxy::pass`].
    pub fn stall(&self) {
        self.shared.change(|state| {
            state.mode = Mode::Stall;
            state.armed = None;
        });
    }

    /// Forwards `bytes` more bytes, then stalls like [`NetProxy::stall`].
    pub fn stall_after(&self, bytes: u64) {
        self.shared.change(|state| {
            state.mode = Mode::Pass;
            state.armed = Some((Armed::Stall, bytes));
        });
    }

    /// Resets every new connection as soon as it is accepted; open ones pass.
    pub fn refuse(&self) {
        self.shared.change(|state| {
            state.mode = Mode::Refuse;
            state.armed = None;
        });
    }

    /// Whether the proxy is stalling now (an armed stall has fired, or [`NetProxy::stall`]).
    pub fn is_stalled(&self) -> bool {
        self.shared.state().mode == Mode::Stall
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.shared.state().connections
    }

    /// Connections reset so far, by cuts and refusals.
    pub fn resets(&self) -> u64 {
        self.shared.state().resets
    }

    /// Bytes forwarded so far, both directions together.
    pub fn forwarded(&self) -> u64 {
        self.shared.state().forwarded
    }
}

impl Drop for NetProxy {
    fn drop(&mut self) {
        // Aborting the accept loop drops its JoinSet, which aborts every connection.
        self.listener.abort();
    }
}

/// Closes `stream` with a TCP reset instead of a FIN.
fn reset(stream: TcpStream) {
    // A socket that is already gone needs no reset.
    let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
    drop(stream);
}

/// One client connection: connects upstream and pumps both ways until both ends close, or a
/// cut resets both.
async fn serve(shared: Arc<Shared>, client: TcpStream) {
    let (refused, generation) = {
        let mut state = shared.state();
        state.connections += 1;
        let refused = state.mode == Mode::Refuse;
        if refused {
            state.resets += 1;
        }
        (refused, state.cut_generation)
    };
    if refused {
        reset(client);
        return;
    }
    let Ok(mut upstream) = TcpStream::connect(&shared.upstream).await else {
        reset(client);
        return;
    };
    let mut client = client;
    let mut changes = shared.changed.subscribe();
    let cut = async {
        loop {
            if shared.state().cut_generation != generation {
                return;
            }
            if changes.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    };
    {
        let (mut client_read, mut client_write) = client.split();
        let (mut upstream_read, mut upstream_write) = upstream.split();
        let both_ways = futures::future::join(
            pump(&shared, generation, &mut client_read, &mut upstream_write),
            pump(&shared, generation, &mut upstream_read, &mut client_write),
        );
        tokio::select! {
            _ = both_ways => {},
            () = cut => {},
        }
    }
    if shared.state().cut_generation != generation {
        shared.state().resets += 1;
        reset(client);
        reset(upstream);
    }
}

/// Copies `from` to `to` through [`Shared::admit`] until `from` ends (then half-closes `to`) or
/// the connection is cut.
async fn pump(
    shared: &Shared,
    generation: u64,
    from: &mut tokio::net::tcp::ReadHalf<'_>,
    to: &mut tokio::net::tcp::WriteHalf<'_>,
) {
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut sent = 0;
        while sent < read {
            let Some(allowed) = shared.admit(generation, (read - sent) as u64).await else {
                return;
            };
            let allowed = allowed as usize;
            if to.write_all(&buffer[sent..sent + allowed]).await.is_err() {
                return;
            }
            sent += allowed;
        }
    }
    // The other side may still be talking: only this direction ends.
    let _ = to.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An upstream that answers every byte it reads with the same byte, and a proxy in front.
    async fn echo_behind_proxy() -> anyhow::Result<NetProxy> {
        let echo = TcpListener::bind("127.0.0.1:0").await?;
        let address = echo.local_addr()?.to_string();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = echo.accept().await {
                tokio::spawn(async move {
                    let (mut read, mut write) = stream.split();
                    let _ = tokio::io::copy(&mut read, &mut write).await;
                });
            }
        });
        NetProxy::start(&address).await
    }

    async fn round_trip(stream: &mut TcpStream, bytes: &[u8]) -> std::io::Result<Vec<u8>> {
        stream.write_all(bytes).await?;
        let mut back = vec![0u8; bytes.len()];
        stream.read_exact(&mut back).await?;
        Ok(back)
    }

    const PATIENCE: Duration = Duration::from_secs(10);

    #[tokio::test]
    async fn passes_cuts_stalls_and_refuses_on_command() {
        let proxy = echo_behind_proxy().await.unwrap();
        let address = ("127.0.0.1", proxy.port());

        // Pass.
        let mut first = TcpStream::connect(address).await.unwrap();
        assert_eq!(round_trip(&mut first, b"hello").await.unwrap(), b"hello");
        assert_eq!(proxy.forwarded(), 10);

        // Cut after 2 more bytes: the connection is reset, nothing comes back.
        proxy.cut_after(2);
        first.write_all(b"ab").await.unwrap();
        let mut rest = [0u8; 1];
        let after_cut = tokio::time::timeout(PATIENCE, first.read(&mut rest))
            .await
            .expect("a cut connection ends at once");
        assert!(
            matches!(after_cut, Err(_) | Ok(0)),
            "the cut connection still delivered data"
        );
        assert_eq!((proxy.resets(), proxy.forwarded()), (1, 12));
        // The cut fired once: a new connection passes.
        let mut second = TcpStream::connect(address).await.unwrap();
        assert_eq!(round_trip(&mut second, b"again").await.unwrap(), b"again");

        // Stall: nothing comes back, the connection stays open; pass resumes it.
        proxy.stall();
        assert!(proxy.is_stalled());
        second.write_all(b"held").await.unwrap();
        let mut held = [0u8; 4];
        let silent = tokio::time::timeout(Duration::from_millis(300), second.read(&mut held)).await;
        assert!(silent.is_err(), "a stalled connection delivered data");
        proxy.pass();
        tokio::time::timeout(PATIENCE, second.read_exact(&mut held))
            .await
            .expect("the stalled bytes arrive after pass")
            .unwrap();
        assert_eq!(&held, b"held");

        // Stall after 2 bytes: exactly 2 more are forwarded, then silence until pass.
        let before = proxy.forwarded();
        proxy.stall_after(2);
        second.write_all(b"wxyz").await.unwrap();
        tokio::time::timeout(PATIENCE, async {
            while !proxy.is_stalled() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("the armed stall fires");
        assert_eq!(proxy.forwarded(), before + 2);
        proxy.pass();
        let mut four = [0u8; 4];
        second.read_exact(&mut four).await.unwrap();
        assert_eq!(&four, b"wxyz");

        // Refuse: a new connection is reset; the open one still passes.
        proxy.refuse();
        let mut refused = TcpStream::connect(address).await.unwrap();
        let refused_read = tokio::time::timeout(PATIENCE, refused.read(&mut rest))
            .await
            .expect("a refused connection ends at once");
        assert!(matches!(refused_read, Err(_) | Ok(0)));
        assert_eq!(round_trip(&mut second, b"rt").await.unwrap(), b"rt");
        assert_eq!((proxy.connections(), proxy.resets()), (3, 2));
    }
}
