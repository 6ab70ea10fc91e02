//! Watch the DLQ's depth from the side: every few seconds, on a connection of its own,
//! read how many messages are ready on the DLQ and tell the [`Observer`] (the
//! `dlqd_dlq_depth` gauge and the progress bar's "left on the DLQ").
//!
//! Kept apart from the consume loop so that a slow or failed depth query never holds up
//! a message; when the broker is unreachable it simply tries again later.

use std::time::Duration;

use tokio::task::JoinHandle;

use crate::broker::Session;
use crate::observer::Observer;

/// Start watching `queue` every `every`; abort the handle to stop.
pub fn spawn(
    urls: Vec<String>,
    queue: String,
    every: Duration,
    observer: Observer,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut session: Option<Session> = None;
        loop {
            if session.is_none() {
                match Session::open(&urls, 0).await {
                    Ok(s) => session = Some(s),
                    Err(e) => tracing::debug!(error = %e, "depth watch: cannot connect yet"),
                }
            }
            if let Some(s) = &session {
                match s.queue_depth(&queue).await {
                    Ok(n) => observer.depth(u64::from(n)),
                    Err(e) => {
                        tracing::debug!(error = %e, "depth watch: cannot read the DLQ depth");
                        if !s.is_connected()
                            && let Some(s) = session.take()
                        {
                            s.close().await;
                        }
                    }
                }
            }
            tokio::time::sleep(every).await;
        }
    })
}
