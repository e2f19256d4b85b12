//! The Kafka listener: accepts connections under the `max.connections` cap and hands each to a
//! connection task; on shutdown it stops accepting and waits for open connections to finish the
//! requests they have in flight.

use std::sync::Arc;
use std::time::Duration;

use slog::{Logger, info, warn};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use crate::broker::Broker;
use crate::connection;

/// How long open connections get to finish their in-flight requests at shutdown.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts Kafka connections on `listener` until `shutdown` turns true, then drains them.
pub async fn serve(
    listener: TcpListener,
    broker: Arc<Broker>,
    mut shutdown: watch::Receiver<bool>,
    log: Logger,
) {
    let permits = Arc::new(Semaphore::new(broker.config.max_connections));
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.wait_for(|stop| *stop) => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning on the error.
                warn!(log, "accept failed"; "error" => %e);
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            broker.metrics.connections_refused.inc();
            warn!(log, "connection refused: max.connections reached";
                "peer" => %peer, "max_connections" => broker.config.max_connections);
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        broker.metrics.connections_total.inc();
        broker.metrics.connections_active.inc();
        let broker = broker.clone();
        let shutdown = shutdown.clone();
        let log = log.new(slog::o!("peer" => peer.to_string()));
        connections.spawn(async move {
            connection::serve(stream, peer, broker.clone(), shutdown, log).await;
            broker.metrics.connections_active.dec();
            drop(permit);
        });
    }
    info!(log, "kafka listener closed; draining connections"; "open" => connections.len());
    if tokio::time::timeout(DRAIN_TIMEOUT, async {
        while connections.join_next().await.is_some() {}
    })
    .await
    .is_err()
    {
        warn!(log, "connections still open after drain timeout; closing them";
            "open" => connections.len());
        connections.abort_all();
    }
}
