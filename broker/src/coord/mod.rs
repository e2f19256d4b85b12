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

/// How long the first placement of pchannels waits for every expected broker to register.
pub const FORMATION_GRACE: Duration = Duration::from_secs(15);

/// Runs the balancer whenever this node leads the group, until `shutdown` turns true.
///
/// `expected` are the brokers the configuration names (the Raft voters): pchannels are first
/// placed once all of them are live, or after [`FORMATION_GRACE`], so a new cluster spreads
/// its pchannels over every broker instead of giving them all to the first one up. Once placed,
/// a pchannel stays with its owner (see [`balancer`]).
pub async fn run(
    cluster: Arc<Cluster>,
    expected: Vec<i32>,
    mut shutdown: watch::Receiver<bool>,
    log: Logger,
) {
    let mut versions = cluster.watch();
    let started = std::time::Instant::now();
    loop {
        if cluster.controller_id() == cluster.node_id() {
            let state = cluster.state();
            let now = crate::streaming::wal::now_ms();
            let all_live = expected
                .iter()
                .all(|id| state.live_brokers(now).any(|b| b.broker_id == *id));
            let place_new = all_live || started.elapsed() >= FORMATION_GRACE;
            for command in balancer::plan(&state, now, place_new) {
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
