//! Helpers for tests of the real runtime over TCP on loopback: fast timing, three-node
//! groups on `127.0.0.1:0`, waiting for a leader on status changes.

use std::collections::BTreeMap;
use std::time::Duration;

use sluice_raft::{Command, CommandResult, Error, MetadataStore, NodeConfig};
use tokio::net::TcpListener;
use uuid::Uuid;

pub fn create_topic(name: &str, partitions: u32) -> Command {
    Command::CreateTopic {
        name: name.into(),
        topic_id: Uuid::new_v4(),
        partitions,
        configs: BTreeMap::new(),
    }
}

/// 20 ms ticks, elections after 0.4–0.8 s (wide enough for a busy 2-core machine).
pub fn fast(mut c: NodeConfig) -> NodeConfig {
    c.tick_ms = 20;
    c.election_ticks = 20;
    c.heartbeat_ticks = 2;
    c.snapshot_interval = 8;
    c.snapshot_keep = 2;
    c.request_timeout_ms = 5_000;
    c
}

/// Fails the test instead of hanging when `f` does not complete within 10 s.
pub async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), f)
        .await
        .expect("completed within 10 s")
}

/// Waits (on status changes, not by polling) until one of `stores` leads; returns its index.
pub async fn leader_of(stores: &[MetadataStore]) -> usize {
    let (tx, mut rx) = tokio::sync::mpsc::channel(stores.len());
    let tasks: Vec<_> = stores
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let (mut w, tx) = (s.subscribe_status(), tx.clone());
            tokio::spawn(async move {
                if w.wait_for(|st| st.is_leader).await.is_ok() {
                    let _ = tx.send(i).await;
                }
            })
        })
        .collect();
    let i = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("a leader is elected")
        .unwrap();
    for t in tasks {
        t.abort();
    }
    i
}

/// Proposes on whichever store leads, retrying when leadership moved before the proposal
/// entered the log (`NotLeader`, `ProposalDropped`: certainly not applied). Returns the index
/// of the store that applied it and the state version that includes it.
pub async fn propose_on_leader(
    stores: &[MetadataStore],
    cmd: Command,
) -> (usize, u64, CommandResult) {
    for _ in 0..100 {
        let l = leader_of(stores).await;
        match stores[l].propose(cmd.clone()).await {
            Ok(r) => return (l, stores[l].state().version, r),
            Err(Error::NotLeader { .. } | Error::ProposalDropped) => {
                let mut w = stores[l].subscribe_status();
                let _ = within(w.wait_for(|st| !st.is_leader)).await;
            }
            Err(e) => panic!("proposal failed: {e}"),
        }
    }
    panic!("no stable leader")
}

pub async fn start_three(dir: &std::path::Path) -> (Vec<MetadataStore>, BTreeMap<u64, String>) {
    start_three_with(dir, fast).await
}

/// Three nodes on loopback, each configured by `tweak` (e.g. [`fast`] plus changes).
pub async fn start_three_with(
    dir: &std::path::Path,
    tweak: impl Fn(NodeConfig) -> NodeConfig,
) -> (Vec<MetadataStore>, BTreeMap<u64, String>) {
    let mut listeners = Vec::new();
    let mut addrs = BTreeMap::new();
    for id in 1..=3u64 {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        addrs.insert(id, l.local_addr().unwrap().to_string());
        listeners.push(l);
    }
    let mut stores = Vec::new();
    for (i, l) in listeners.into_iter().enumerate() {
        let id = i as u64 + 1;
        let cfg = NodeConfig::cluster(
            id,
            dir.join(format!("n{id}")),
            addrs[&id].clone(),
            addrs.clone(),
        );
        let s = MetadataStore::start_with_listener(tweak(cfg), Some(l), super::logger())
            .await
            .unwrap();
        stores.push(s);
    }
    (stores, addrs)
}
