//! dlqd's HTTP endpoints (`/metrics`, `/health`) read over plain HTTP/1.1: a free port for
//! `--metrics-addr`, one GET, and polling until the answer is the one expected.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A free local port for `--metrics-addr`.
pub fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

/// GET over plain HTTP/1.1; (status, body), or None while nothing listens.
pub async fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: dlqd\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.ok()?;
    let (head, body) = buf.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some((status, body.to_owned()))
}

/// GET /metrics: the body of a 200, or None.
pub async fn scrape(addr: SocketAddr) -> Option<String> {
    match get(addr, "/metrics").await? {
        (200, body) => Some(body),
        _ => None,
    }
}

/// Poll `path` until `pred` holds for the answer (at most `timeout`).
pub async fn get_until(
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
    pred: impl Fn(u16, &str) -> bool,
) -> (u16, String) {
    let deadline = Instant::now() + timeout;
    let mut last = None;
    loop {
        if let Some((status, body)) = get(addr, path).await {
            if pred(status, &body) {
                return (status, body);
            }
            last = Some((status, body));
        }
        assert!(
            Instant::now() < deadline,
            "GET {path} never gave the expected answer; last: {last:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
