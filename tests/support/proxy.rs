//! A TCP proxy inside the test, between dlqd and a broker: it forwards bytes both ways
//! and can cut every connection through it at a chosen moment (both sides see the
//! socket close mid-stream, as after a network failure), without restarting anything.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::copy_bidirectional;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

/// A running proxy; it stops (and cuts everything) when dropped.
pub struct Proxy {
    pub addr: SocketAddr,
    upstream: SocketAddr,
    links: Arc<Mutex<Vec<AbortHandle>>>,
    accepted: Arc<AtomicU64>,
    cuts: AtomicU64,
    acceptor: AbortHandle,
}

impl Proxy {
    /// Listen on a free port of 127.0.0.1 and forward to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("bind the proxy");
        let addr = listener.local_addr().expect("proxy address");
        let links: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let accepted = Arc::new(AtomicU64::new(0));
        let (l, a) = (links.clone(), accepted.clone());
        let acceptor = tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    continue;
                };
                let a = a.clone();
                let link = tokio::spawn(async move {
                    // The broker is down: the client sees its connection closed.
                    let Ok(mut server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    a.fetch_add(1, Ordering::Relaxed);
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let _ = copy_bidirectional(&mut client, &mut server).await;
                });
                let mut links = l.lock().expect("proxy links");
                links.retain(|h| !h.is_finished());
                links.push(link.abort_handle());
            }
        })
        .abort_handle();
        Proxy {
            addr,
            upstream,
            links,
            accepted,
            cuts: AtomicU64::new(0),
            acceptor,
        }
    }

    /// `amqp://guest:guest@<proxy>/%2f`.
    pub fn url(&self) -> String {
        format!("amqp://guest:guest@{}/%2f", self.addr)
    }

    /// Cut every connection through the proxy now; returns how many were open. New
    /// connections are accepted again at once.
    pub fn cut(&self) -> usize {
        let links = std::mem::take(&mut *self.links.lock().expect("proxy links"));
        let open = links.iter().filter(|h| !h.is_finished()).count();
        for h in links {
            h.abort();
        }
        self.cuts.fetch_add(1, Ordering::Relaxed);
        open
    }

    /// Connections made through to the upstream so far.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    pub fn cuts(&self) -> u64 {
        self.cuts.load(Ordering::Relaxed)
    }

    pub fn upstream(&self) -> SocketAddr {
        self.upstream
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.acceptor.abort();
        self.cut();
    }
}
