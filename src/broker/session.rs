//! One connection's worth of broker state: the connection, the publisher, the topology
//! caches. The daemon opens a new session after a connection loss.

use std::sync::Arc;

use lapin::Connection;

use crate::broker::connect::connect_any;
use crate::broker::consumer::DlqConsumer;
use crate::broker::error::{ActionFailure, BrokerError};
use crate::broker::publisher::{Confirm, Publisher};
use crate::broker::topology::{self, Topology};
use crate::message::Message;
use crate::stage::StageKind;

/// A live connection with a confirm-mode publisher.
pub struct Session {
    conn: Arc<Connection>,
    /// Which of the URLs it was opened on.
    url_index: usize,
    /// The type of dlqd's stage queues.
    stage_kind: StageKind,
    publisher: Publisher,
    topology: Topology,
    /// Logs the broker's flow control (connection.blocked / unblocked).
    events: tokio::task::JoinHandle<()>,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.events.abort();
    }
}

/// Log `connection.blocked` (a memory or disk alarm: the broker stops reading what dlqd
/// publishes) and `connection.unblocked`, for as long as the connection lives.
fn log_flow_control(conn: &Connection) -> tokio::task::JoinHandle<()> {
    use futures_lite::StreamExt;
    let events = conn.events_listener();
    tokio::spawn(async move {
        let mut events = std::pin::pin!(events);
        while let Some(event) = events.next().await {
            match event {
                lapin::Event::ConnectionBlocked(reason) => tracing::warn!(
                    reason = %crate::escape::Escaped(&reason),
                    "the broker blocks publishing on this connection (a memory or disk alarm); \
                     publishes wait until it unblocks"
                ),
                lapin::Event::ConnectionUnblocked => {
                    tracing::info!("the broker unblocked publishing")
                }
                _ => {}
            }
        }
    })
}

impl Session {
    /// Open a session on the first of `urls` that accepts, from `start` on (see
    /// [`connect_any`]).
    pub async fn open(urls: &[String], start: usize) -> Result<Self, BrokerError> {
        let (conn, url_index) = connect_any(urls, start).await?;
        let conn = Arc::new(conn);
        let publisher = Publisher::open(&conn).await?;
        let events = log_flow_control(&conn);
        Ok(Session {
            conn,
            url_index,
            stage_kind: StageKind::default(),
            publisher,
            topology: Topology::default(),
            events,
        })
    }

    /// Declare dlqd's stage queues as `kind` from now on.
    pub fn set_stage_kind(&mut self, kind: StageKind) {
        self.stage_kind = kind;
    }

    /// The index (in the URLs it was opened with) of the broker address it is on.
    pub fn url_index(&self) -> usize {
        self.url_index
    }

    /// The connection, for the stage movers (each opens channels of its own on it).
    pub fn connection(&self) -> Arc<Connection> {
        self.conn.clone()
    }

    pub fn is_connected(&self) -> bool {
        self.conn.status().connected()
    }

    /// Start a consumer of `queue` (on its own channel).
    pub async fn consume(&self, queue: &str, prefetch: u16) -> Result<DlqConsumer, BrokerError> {
        DlqConsumer::start(&self.conn, queue, prefetch).await
    }

    /// Publish with confirm and `mandatory`; see [`Publisher::publish`].
    pub async fn publish(
        &mut self,
        exchange: &str,
        routing_key: &str,
        message: &Message,
    ) -> Confirm {
        self.publisher
            .publish(&self.conn, exchange, routing_key, message)
            .await
    }

    /// Ok when `exchange` exists (cached; "" always exists).
    pub async fn ensure_exchange(&mut self, exchange: &str) -> Result<(), ActionFailure> {
        self.topology.ensure_exchange(&self.conn, exchange).await
    }

    /// Declare one of dlqd's stage queues (delay or left queue).
    pub async fn declare_stage_queue(&self, name: &str) -> Result<(), ActionFailure> {
        topology::declare_stage_queue(&self.conn, name, self.stage_kind).await
    }

    /// Ready messages in `queue`.
    pub async fn queue_depth(&self, queue: &str) -> Result<u32, ActionFailure> {
        topology::queue_depth(&self.conn, queue).await
    }

    pub async fn close(self) {
        self.publisher.close().await;
        let _ = self.conn.close(200, "dlqd stopping".into()).await;
    }
}
