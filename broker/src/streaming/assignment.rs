//! Follows the applied assignment: opens the pchannels the coordinator gave this node (and
//! confirms them, ASSIGNING → ASSIGNED), closes those it lost, applies per-topic retention to
//! the vchannels it serves and drops the vchannels of deleted topics.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use log_store::{Retention, VChannelId};
use slog::{Logger, error, info, warn};
use sluice_raft::command::Command;
use sluice_raft::state::{AssignmentState, MetadataState};
use tokio::sync::watch;

use super::StreamingNode;
use crate::cluster::Cluster;
use crate::config::Config;
use crate::topic_config::TopicConfig;

/// Brings the open pchannels in line with one applied state. Returns whether every pchannel
/// assigned to this node is open.
pub async fn reconcile(
    cluster: &Cluster,
    node: &Arc<StreamingNode>,
    config: &Config,
    state: &MetadataState,
    log: &Logger,
) -> bool {
    let me = cluster.node_id();
    let mine: HashMap<u32, (u64, AssignmentState)> = state
        .pchannels
        .iter()
        .filter(|pc| pc.broker_id == Some(me))
        .filter(|pc| {
            matches!(
                pc.state,
                AssignmentState::Assigning | AssignmentState::Assigned
            )
        })
        .map(|pc| (pc.pchannel, (pc.term, pc.state)))
        .collect();
    for wal in node.wals() {
        if mine
            .get(&wal.pchannel)
            .is_none_or(|(term, _)| *term != wal.term)
        {
            info!(log, "pchannel no longer served here"; "pchannel" => wal.pchannel, "term" => wal.term);
            let node = node.clone();
            let id = wal.pchannel;
            let _ = tokio::task::spawn_blocking(move || node.close(id)).await;
        }
    }
    let mut all_open = true;
    for (&pchannel, &(term, assignment)) in &mine {
        let open = node.wal(pchannel).is_some_and(|w| w.term == term);
        if !open {
            let node = node.clone();
            match tokio::task::spawn_blocking(move || node.open(pchannel, term)).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    error!(log, "cannot open pchannel"; "pchannel" => pchannel, "error" => %e);
                    all_open = false;
                    continue;
                }
                Err(e) => {
                    error!(log, "opening pchannel panicked"; "pchannel" => pchannel, "error" => %e);
                    all_open = false;
                    continue;
                }
            }
        }
        if assignment == AssignmentState::Assigning
            && let Err(e) = cluster
                .propose(Command::ConfirmPChannel { pchannel, term })
                .await
        {
            warn!(log, "confirming pchannel failed"; "pchannel" => pchannel, "term" => term, "error" => %e);
            all_open = false;
        }
    }
    apply_topics(node, config, state, log);
    all_open
}

/// Per-vchannel retention from topic configs, and removal of deleted topics' vchannels.
fn apply_topics(node: &StreamingNode, config: &Config, state: &MetadataState, log: &Logger) {
    let mut live: HashMap<u32, HashSet<u64>> = HashMap::new();
    for topic in state.topics.values() {
        let effective = TopicConfig::effective(config, &topic.configs);
        let retention = Retention {
            ms: effective.retention_ms,
            bytes: effective.retention_bytes.map(|b| b as u64),
        };
        for p in &topic.partitions {
            live.entry(p.pchannel).or_default().insert(p.vchannel);
            let Some(wal) = node.wal(p.pchannel) else {
                continue;
            };
            let vchannel = VChannelId(p.vchannel);
            let current = wal.log.vchannel_state(vchannel).map(|s| s.retention);
            if current != Some(retention)
                && let Err(e) = wal.log.set_retention(vchannel, retention)
            {
                warn!(log, "setting retention failed"; "vchannel" => p.vchannel, "error" => %e);
            }
        }
    }
    for wal in node.wals() {
        let keep = live.get(&wal.pchannel);
        for vchannel in wal.log.vchannels() {
            if keep.is_none_or(|k| !k.contains(&vchannel.0)) {
                info!(log, "dropping vchannel of a deleted topic"; "pchannel" => wal.pchannel, "vchannel" => vchannel.0);
                if let Err(e) = wal.log.delete_vchannel(vchannel) {
                    warn!(log, "dropping vchannel failed"; "vchannel" => vchannel.0, "error" => %e);
                }
            }
        }
    }
}

/// Reconciles after every applied metadata change until `shutdown` turns true.
pub async fn follow(
    cluster: Arc<Cluster>,
    node: Arc<StreamingNode>,
    config: Config,
    mut shutdown: watch::Receiver<bool>,
    log: Logger,
) {
    let mut versions = cluster.watch();
    loop {
        let state = cluster.state();
        reconcile(&cluster, &node, &config, &state, &log).await;
        tokio::select! {
            changed = versions.changed() => if changed.is_err() { return },
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}

/// At start-up: waits until the coordinator assigned pchannels and this node opened every one
/// assigned to it, so the listener opens with partitions ready to serve.
pub async fn wait_until_served(
    cluster: &Cluster,
    node: &Arc<StreamingNode>,
    config: &Config,
    log: &Logger,
) {
    let mut versions = cluster.watch();
    loop {
        let state = cluster.state();
        let assigned = !state.pchannels.is_empty()
            && state
                .pchannels
                .iter()
                .all(|pc| pc.state != AssignmentState::Uninitialized);
        if reconcile(cluster, node, config, &state, log).await && assigned {
            info!(log, "serving pchannels"; "open" => node.wals().len(), "pool" => state.pchannels.len());
            return;
        }
        if versions.changed().await.is_err() {
            return;
        }
    }
}
