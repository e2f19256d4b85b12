//! The coordinator: runs on the metadata Raft leader only. Today it is the balancer, which gives
//! every orphaned pchannel a live owner; every move first persists ASSIGNING with a new term,
//! so the old owner is fenced before the new one opens the pchannel.

pub mod balancer;

use std::sync::Arc;
use std::time::Duration;

use slog::{Logger, debug, info, warn};
use tokio::sync::watch;

use crate::cluster::Cluster;

/// How often the leader re-checks assignments besides reacting to metadata changes (leases run
/// out without any metadata change).
const RECHECK: Duration = Duration::from_millis(500);

/// Runs the balancer whenever this node leads the group, until `shutdown` turns true.
pub async fn run(cluster: Arc<Cluster>, mut shutdown: watch::Receiver<bool>, log: Logger) {
    let mut versions = cluster.watch();
    loop {
        if cluster.controller_id() == cluster.node_id() {
            let state = cluster.state();
            for command in balancer::plan(&state, crate::streaming::wal::now_ms()) {
                debug!(log, "balancer proposes"; "command" => ?command);
                match cluster.propose(command.clone()).await {
                    Ok(_) => info!(log, "pchannel assigned"; "command" => ?command),
                    Err(e) => {
                        warn!(log, "pchannel assignment failed"; "command" => ?command, "error" => %e)
                    }
                }
            }
        }
        tokio::select! {
            changed = versions.changed() => if changed.is_err() { return },
            _ = tokio::time::sleep(RECHECK) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}
