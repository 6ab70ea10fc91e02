//! The `--metrics-addr` HTTP endpoint: `GET /metrics` (OpenMetrics text) and `GET /health`.
//!
//! `/health` answers 200 `ok` while the handler of every DLQ served is connected to
//! the broker ([`Metrics::is_connected`]) and 503 otherwise. A DLQ that is missing or
//! refused counts as connected (a restart cannot cure it; `dlqd_dlq_up` and the logs say
//! it). With several DLQs, or when unhealthy, one line per DLQ follows the first: `queue:
//! consuming`, `queue: connected; the DLQ is unavailable: ...`, `queue: not connected to
//! the broker`. HTTP/1 only, no TLS: put it behind whatever the platform uses for scraping.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::metrics::{self, Metrics};

/// Why the endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen for metrics on {addr}: {cause}")]
    Bind {
        addr: SocketAddr,
        /// Shown in the message, not chained (or `{:#}` would print it twice).
        cause: std::io::Error,
    },
}

/// A bound, not yet serving, metrics endpoint.
#[derive(Debug)]
pub struct MetricsServer {
    listener: TcpListener,
    addr: SocketAddr,
}

impl MetricsServer {
    /// Listen on `addr` (port 0 picks a free port; see [`MetricsServer::local_addr`]).
    pub async fn bind(addr: SocketAddr) -> Result<Self, ServerError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|cause| ServerError::Bind { addr, cause })?;
        let addr = listener
            .local_addr()
            .map_err(|cause| ServerError::Bind { addr, cause })?;
        Ok(MetricsServer { listener, addr })
    }

    /// The address actually listened on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serve until `shutdown` completes. Each connection is its own task; a connection
    /// error is logged at debug and never stops the server.
    pub async fn serve(self, metrics: Metrics, shutdown: impl Future<Output = ()>) {
        tracing::info!(addr = %self.addr, "serving metrics at /metrics and /health");
        tokio::pin!(shutdown);
        loop {
            let (stream, peer) = tokio::select! {
                _ = &mut shutdown => break,
                accepted = self.listener.accept() => match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        // Typically EMFILE: back off a little rather than spin.
                        tracing::warn!(error = %e, "metrics endpoint: accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let metrics = metrics.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let metrics = metrics.clone();
                    async move { Ok::<_, Infallible>(respond(&metrics, &req)) }
                });
                if let Err(e) = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await
                {
                    tracing::debug!(%peer, error = %e, "metrics endpoint: connection error");
                }
            });
        }
    }

    /// Serve in a background task until `shutdown` completes (or the task is aborted).
    pub fn spawn(
        self,
        metrics: Metrics,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> JoinHandle<()> {
        tokio::spawn(self.serve(metrics, shutdown))
    }
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// The answer to one request (no I/O: testable without a socket).
pub fn respond(metrics: &Metrics, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    route(metrics, req.method(), req.uri().path())
}

fn route(metrics: &Metrics, method: &Method, path: &str) -> Response<Full<Bytes>> {
    if method != Method::GET && method != Method::HEAD {
        let mut resp = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        resp.headers_mut()
            .insert(hyper::header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return resp;
    }
    match path {
        "/metrics" => {
            let mut resp = text(StatusCode::OK, metrics.render());
            resp.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static(metrics::CONTENT_TYPE),
            );
            resp
        }
        "/health" | "/healthz" => {
            let report = metrics.health_report();
            let several = report.lines().count() > 1;
            if metrics.is_connected() {
                let detail = if several { report.as_str() } else { "" };
                text(StatusCode::OK, format!("ok\n{detail}"))
            } else {
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("not connected to the broker\n{report}"),
                )
            }
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: try /metrics or /health\n",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A raw HTTP/1.1 GET; returns (status code, body).
    async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.expect("write");
        let mut buf = String::new();
        s.read_to_string(&mut buf).await.expect("read");
        let (head, body) = buf.split_once("\r\n\r\n").expect("a full response");
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .expect("a status code");
        (status, body.to_owned())
    }

    #[tokio::test]
    async fn serves_metrics_and_health_over_http() {
        let root = Metrics::new();
        let metrics = root.for_queue("q");
        let server = MetricsServer::bind("127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("bind");
        let addr = server.local_addr();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let task = server.spawn(metrics.clone(), async move {
            let _ = stop_rx.await;
        });

        assert_eq!(get(addr, "/health").await.0, 503);
        metrics.set_connected(true);
        assert_eq!(get(addr, "/health").await, (200, "ok\n".to_owned()));

        let other = root.for_queue("r");
        let (status, body) = get(addr, "/health").await;
        assert_eq!(status, 503);
        assert!(body.contains("r: not connected to the broker\n"), "{body}");
        other.set_state(crate::metrics::DlqState::Unavailable("404".into()));
        assert_eq!(
            get(addr, "/health").await,
            (
                200,
                "ok\nq: consuming\nr: connected; the DLQ is unavailable: 404\n".to_owned()
            )
        );
        other.retire();

        metrics.action(Some(3), "forward");
        let (status, body) = get(addr, "/metrics").await;
        assert_eq!(status, 200);
        assert!(
            body.contains(r#"dlqd_messages_total{queue="q",rule="3",action="forward"} 1"#),
            "{body}"
        );
        assert!(body.ends_with("# EOF\n"), "{body}");

        assert_eq!(get(addr, "/nope").await.0, 404);

        stop_tx.send(()).expect("server still running");
        task.await.expect("server task ends cleanly");
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    }

    #[test]
    fn only_get_and_head_are_allowed() {
        let m = Metrics::new();
        assert_eq!(
            route(&m, &Method::POST, "/metrics").status(),
            StatusCode::METHOD_NOT_ALLOWED
        );
        assert_eq!(
            route(&m, &Method::HEAD, "/metrics").status(),
            StatusCode::OK
        );
    }

    #[tokio::test]
    async fn bind_error_names_the_address() {
        let first = MetricsServer::bind("127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("bind");
        let err = MetricsServer::bind(first.local_addr())
            .await
            .expect_err("port in use");
        assert!(
            err.to_string().contains(&first.local_addr().to_string()),
            "{err}"
        );
    }
}
