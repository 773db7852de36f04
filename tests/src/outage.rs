//! [`Switch`]: a loopback TCP forwarder put in front of a real dependency
//! (moto's Secrets Manager or STS, an OIDC issuer, Pulsar's admin API), so a
//! test can make that dependency go away from a function that is already
//! warm, and come back, without stopping what other tests share.
//!
//! Off is a real outage as a client sees it: the port is closed, so a new
//! connection is refused (`ECONNREFUSED`), and every connection it was
//! forwarding is reset, so a pooled keep-alive connection cannot quietly
//! carry the next request. On again listens on the same port, so the
//! function's configuration (an endpoint URL read at cold start) stays valid.
//! [`Switch::cut_after_requests`] takes the dependency away in the middle of
//! a run: after it has passed a given number of HTTP/1 requests.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;
use url::Url;

/// How long [`Switch::on`] keeps trying to listen on its port again.
const REBIND_PATIENCE: Duration = Duration::from_secs(5);

/// A forwarder from `127.0.0.1:{port}` to one target; on from the start.
pub struct Switch {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

struct Shared {
    target: SocketAddr,
    /// What the test asked for: forwarding or not.
    wanted: watch::Sender<bool>,
    /// What is true now: listening or not (the acceptor's acknowledgement).
    listening: watch::Sender<bool>,
    /// Connections being forwarded right now.
    active: AtomicUsize,
    /// Connections accepted since the start.
    accepted: AtomicU64,
    /// HTTP/1 requests seen going to the target since the start.
    requests: AtomicU64,
    /// Turn off once this many requests have been passed (`u64::MAX`: never).
    cut_after: AtomicU64,
}

impl Drop for Switch {
    fn drop(&mut self) {
        self.shared.wanted.send_replace(false);
        self.task.abort();
    }
}

impl Switch {
    /// A switch forwarding to `target`, listening on a free loopback port.
    pub async fn start(target: SocketAddr) -> Self {
        let listener = listen(SocketAddr::from(([127, 0, 0, 1], 0)))
            .unwrap_or_else(|e| panic!("a switch cannot listen on loopback: {e}"));
        let addr = listener
            .local_addr()
            .expect("a bound listener has an address");
        let shared = Arc::new(Shared {
            target,
            wanted: watch::Sender::new(true),
            listening: watch::Sender::new(true),
            active: AtomicUsize::new(0),
            accepted: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            cut_after: AtomicU64::new(u64::MAX),
        });
        let task = tokio::spawn(run(addr, listener, shared.clone()));
        Self { addr, shared, task }
    }

    /// A switch in front of the host and port of `url` (an `http://` URL on
    /// loopback, as every dependency of the test stack is).
    pub async fn in_front_of(url: &Url) -> Self {
        Self::start(socket_addr(url)).await
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `url` with its host and port replaced by the switch's: the same
    /// endpoint, reached through the switch.
    pub fn url_for(&self, url: &Url) -> Url {
        let mut through = url.clone();
        through
            .set_ip_host(self.addr.ip())
            .expect("an http URL takes an IP host");
        through
            .set_port(Some(self.addr.port()))
            .expect("an http URL takes a port");
        through
    }

    /// Stops forwarding: once this returns, the port refuses connections and
    /// every connection that was being forwarded has been reset.
    pub async fn off(&self) {
        self.shared.wanted.send_replace(false);
        self.settle(false).await;
    }

    /// Forwards again, on the same port; returns once it listens.
    pub async fn on(&self) {
        self.shared.cut_after.store(u64::MAX, Ordering::SeqCst);
        self.shared.wanted.send_replace(true);
        self.settle(true).await;
    }

    /// Passes `n` more HTTP/1 requests, then turns off by itself (as
    /// [`Self::off`]) when the next one starts: that one and everything
    /// after it never reach the target.
    pub fn cut_after_requests(&self, n: u64) {
        let seen = self.shared.requests.load(Ordering::SeqCst);
        self.shared.cut_after.store(seen + n, Ordering::SeqCst);
    }

    /// Whether it is forwarding now.
    pub fn is_on(&self) -> bool {
        *self.shared.listening.borrow()
    }

    /// Connections accepted so far (a cached answer makes none).
    pub fn connections(&self) -> u64 {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// HTTP/1 requests passed to the target so far.
    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::SeqCst)
    }

    async fn settle(&self, on: bool) {
        let mut listening = self.shared.listening.subscribe();
        tokio::time::timeout(REBIND_PATIENCE * 2, listening.wait_for(|l| *l == on))
            .await
            .unwrap_or_else(|_| panic!("switch {} did not turn {}", self.addr, word(on)))
            .expect("the switch's task runs while the switch exists");
        if !on {
            let deadline = Instant::now() + Duration::from_secs(5);
            while self.shared.active.load(Ordering::SeqCst) > 0 {
                assert!(
                    Instant::now() < deadline,
                    "switch {}: forwarded connections did not close",
                    self.addr
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
}

fn word(on: bool) -> &'static str {
    if on { "on" } else { "off" }
}

/// The loopback address an `http://127.0.0.1:port/…` URL points at.
pub fn socket_addr(url: &Url) -> SocketAddr {
    let ip = match url.host() {
        Some(url::Host::Ipv4(ip)) => std::net::IpAddr::V4(ip),
        Some(url::Host::Domain("localhost")) => std::net::IpAddr::from([127, 0, 0, 1]),
        other => panic!("a switch fronts a loopback IP, not {other:?} ({url})"),
    };
    SocketAddr::new(ip, url.port_or_known_default().expect("a port"))
}

/// A listener with `SO_REUSEADDR`, so the port can be taken again right after
/// it was closed (its reset connections linger in the kernel for a while).
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Accepts while wanted; closes the port while not.
async fn run(addr: SocketAddr, first: TcpListener, shared: Arc<Shared>) {
    let mut wanted = shared.wanted.subscribe();
    let mut listener = first;
    loop {
        let accepted = tokio::select! {
            changed = wanted.wait_for(|w| !*w) => match changed {
                Ok(_) => None,
                Err(_) => return,
            },
            accepted = listener.accept() => Some(accepted),
        };
        let Some(accepted) = accepted else {
            // Closing the port is what makes new connections refused.
            drop(listener);
            shared.listening.send_replace(false);
            if wanted.wait_for(|w| *w).await.is_err() {
                return;
            }
            listener = rebind(addr).await;
            shared.listening.send_replace(true);
            continue;
        };
        if let Ok((client, _)) = accepted {
            shared.accepted.fetch_add(1, Ordering::SeqCst);
            shared.active.fetch_add(1, Ordering::SeqCst);
            let shared = shared.clone();
            tokio::spawn(async move {
                forward(client, &shared).await;
                shared.active.fetch_sub(1, Ordering::SeqCst);
            });
        }
    }
}

async fn rebind(addr: SocketAddr) -> TcpListener {
    let deadline = Instant::now() + REBIND_PATIENCE;
    loop {
        match listen(addr) {
            Ok(listener) => return listener,
            Err(e) if Instant::now() < deadline => {
                tracing::debug!(%addr, error = %e, "switch: port not free yet");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("switch {addr}: cannot listen again: {e}"),
        }
    }
}

/// Pumps both ways until either side closes or the switch turns off; then
/// resets both sides (linger 0) rather than closing them politely, as a
/// dependency that went away would.
async fn forward(mut client: TcpStream, shared: &Shared) {
    let mut wanted = shared.wanted.subscribe();
    let Ok(mut upstream) = TcpStream::connect(shared.target).await else {
        reset(client);
        return;
    };
    let (mut from_client, mut to_client) = client.split();
    let (mut from_upstream, mut to_upstream) = upstream.split();
    let up = async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = from_client.read(&mut buf).await?;
            if n == 0 {
                return to_upstream.shutdown().await;
            }
            if starts_request(&buf[..n]) {
                let seen = shared.requests.load(Ordering::SeqCst);
                if seen >= shared.cut_after.load(Ordering::SeqCst) {
                    shared.wanted.send_replace(false);
                    return Ok(());
                }
                shared.requests.fetch_add(1, Ordering::SeqCst);
            }
            to_upstream.write_all(&buf[..n]).await?;
        }
    };
    let down = async {
        tokio::io::copy(&mut from_upstream, &mut to_client).await?;
        to_client.shutdown().await
    };
    tokio::select! {
        _ = wanted.wait_for(|w| !*w) => {}
        _ = async { tokio::try_join!(up, down) } => {}
    }
    reset(client);
    reset(upstream);
}

/// True when `chunk` is the start of an HTTP/1 request. Clients write a
/// request's head in one piece, and HTTP/1 clients send one request at a time
/// per connection, so a read that starts with a method starts a request.
fn starts_request(chunk: &[u8]) -> bool {
    const METHODS: [&[u8]; 7] = [
        b"GET ",
        b"PUT ",
        b"POST ",
        b"DELETE ",
        b"HEAD ",
        b"PATCH ",
        b"OPTIONS ",
    ];
    METHODS.iter().any(|m| chunk.starts_with(m))
}

// Deprecated because a non-zero linger blocks the thread on drop; a zero one
// never blocks: the close sends a reset and returns at once.
#[allow(deprecated)]
fn reset(stream: TcpStream) {
    let _ = stream.set_linger(Some(Duration::ZERO));
    drop(stream);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn off_refuses_and_resets_and_on_forwards_again_on_the_same_port() {
        let upper = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = upper.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = upper.accept().await.unwrap();
                tokio::spawn(async move {
                    // Answers each read upper-cased: not an echo, so bytes
                    // the switch bounced back itself would show.
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 || s.write_all(&buf[..n].to_ascii_uppercase()).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        let switch = Switch::start(target).await;
        let mut open = TcpStream::connect(switch.addr()).await.unwrap();
        open.write_all(b"GET / ping").await.unwrap();
        let mut buf = [0u8; 10];
        open.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"GET / PING");
        assert_eq!(switch.requests(), 1);

        switch.off().await;
        assert!(!switch.is_on());
        let err = TcpStream::connect(switch.addr()).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
        // The established connection was reset, not left half-open.
        let mut rest = Vec::new();
        assert!(
            matches!(open.read_to_end(&mut rest).await, Err(_) | Ok(0)),
            "{rest:?}"
        );

        switch.on().await;
        let mut again = TcpStream::connect(switch.addr()).await.unwrap();
        again.write_all(b"pong").await.unwrap();
        let mut buf = [0u8; 4];
        again.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"PONG");
        assert_eq!(switch.connections(), 2);
    }

    #[tokio::test]
    async fn a_cut_passes_n_requests_then_turns_off() {
        let sink = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = sink.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = sink.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 || s.write_all(b"ok").await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        let switch = Switch::start(target).await;
        switch.cut_after_requests(2);
        let mut s = TcpStream::connect(switch.addr()).await.unwrap();
        for _ in 0..2 {
            s.write_all(b"PUT /x HTTP/1.1\r\n\r\n").await.unwrap();
            let mut buf = [0u8; 2];
            s.read_exact(&mut buf).await.unwrap();
        }
        s.write_all(b"PUT /y HTTP/1.1\r\n\r\n").await.unwrap();
        let mut buf = [0u8; 2];
        assert!(s.read_exact(&mut buf).await.is_err(), "the third was cut");
        let deadline = Instant::now() + Duration::from_secs(5);
        while switch.is_on() {
            assert!(Instant::now() < deadline);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(switch.requests(), 2);
        assert!(TcpStream::connect(switch.addr()).await.is_err());
    }
}
