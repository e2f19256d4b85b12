//! The real runtime: a single node bootstrapping and restarting, and three nodes over TCP on
//! loopback electing a leader, replicating, and failing over when the leader stops.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use sluice_raft::{Command, CommandError, CommandResult, Error, MetadataStore, NodeConfig};
use tokio::net::TcpListener;
use uuid::Uuid;

fn create_topic(name: &str, partitions: u32) -> Command {
    Command::CreateTopic {
        name: name.into(),
        topic_id: Uuid::new_v4(),
        partitions,
        configs: BTreeMap::new(),
    }
}

fn fast(mut c: NodeConfig) -> NodeConfig {
    c.tick_ms = 20;
    c.request_timeout_ms = 5_000;
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_node_bootstraps_once_and_reuses_its_group() {
    let dir = tempfile::tempdir().unwrap();
    let store = MetadataStore::start(fast(NodeConfig::single(1, dir.path())), common::logger())
        .await
        .unwrap();
    let state = store.wait_initialized().await.unwrap();
    let cluster_id = state.cluster.as_ref().unwrap().cluster_id;
    assert_eq!(state.pchannels.len(), 16);

    let mut changes = store.changes();
    let r = store.propose(create_topic("orders", 4)).await.unwrap();
    let CommandResult::PartitionsCreated { placement, .. } = r else {
        panic!("unexpected result {r:?}")
    };
    let pchannels: Vec<u32> = placement.iter().map(|p| p.2).collect();
    assert_eq!(pchannels, vec![0, 1, 2, 3]);
    let change = changes.recv().await.unwrap();
    assert!(matches!(change.command, Some(Command::CreateTopic { .. })));

    let again = store.propose(create_topic("orders", 1)).await;
    assert!(matches!(
        again,
        Err(Error::Rejected(CommandError::TopicAlreadyExists(ref t))) if t == "orders"
    ));
    let read = store.read().await.unwrap();
    assert_eq!(read.topics["orders"].partitions.len(), 4);
    let version = read.version;
    assert_eq!(store.status().leader, Some(1));
    store.shutdown().await;
    assert!(matches!(store.propose(Command::Noop).await, Err(Error::Stopped)));

    // Restart: same group, same cluster id, state rebuilt from the log.
    let store = MetadataStore::start(fast(NodeConfig::single(1, dir.path())), common::logger())
        .await
        .unwrap();
    let state = store.wait_for_version(version).await.unwrap();
    assert_eq!(state.cluster.as_ref().unwrap().cluster_id, cluster_id);
    assert_eq!(state.topics["orders"].partitions.len(), 4);
    store.propose(create_topic("payments", 2)).await.unwrap();
    store.shutdown().await;
}

/// Waits (on status changes, not by polling) until one of `stores` leads; returns its index.
async fn leader_of(stores: &[MetadataStore]) -> usize {
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

async fn start_three(dir: &std::path::Path) -> (Vec<MetadataStore>, BTreeMap<u64, String>) {
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
        let cfg = NodeConfig::cluster(id, dir.join(format!("n{id}")), addrs[&id].clone(), addrs.clone());
        let s = MetadataStore::start_with_listener(fast(cfg), Some(l), common::logger())
            .await
            .unwrap();
        stores.push(s);
    }
    (stores, addrs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_over_tcp_fail_over() {
    let dir = tempfile::tempdir().unwrap();
    let (stores, _) = start_three(dir.path()).await;
    let l = leader_of(&stores).await;
    let follower = (l + 1) % 3;
    assert_eq!(stores[follower].wait_for_leader().await.unwrap(), l as u64 + 1);
    assert!(matches!(
        stores[follower].propose(Command::Noop).await,
        Err(Error::NotLeader { leader: Some(x) }) if x == l as u64 + 1
    ));
    let mut version = 0;
    for i in 0..20 {
        stores[l].propose(create_topic(&format!("t{i}"), 3)).await.unwrap();
        version = stores[l].state().version;
    }
    for s in &stores {
        let st = s.wait_for_version(version).await.unwrap();
        assert_eq!(st.topics.len(), 20);
    }
    // A linearizable read on a follower sees everything acknowledged.
    assert_eq!(stores[follower].read().await.unwrap().topics.len(), 20);

    // Stop the leader: the other two elect a new one and writes continue.
    stores[l].shutdown().await;
    let rest: Vec<MetadataStore> = (0..3).filter(|&i| i != l).map(|i| stores[i].clone()).collect();
    let new_leader = rest[leader_of(&rest).await].clone();
    let r = new_leader.propose(create_topic("after-failover", 1)).await.unwrap();
    assert!(matches!(r, CommandResult::PartitionsCreated { .. }));
    let version = new_leader.state().version;
    for s in &rest {
        let st = s.wait_for_version(version).await.unwrap();
        assert!(st.topics.contains_key("after-failover"));
        assert_eq!(st.topics.len(), 21);
    }
    for s in &rest {
        s.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fourth_node_joins_over_tcp() {
    let dir = tempfile::tempdir().unwrap();
    let (stores, _) = start_three(dir.path()).await;
    let leader = stores[leader_of(&stores).await].clone();
    leader.propose(create_topic("before-join", 2)).await.unwrap();

    let l4 = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr4 = l4.local_addr().unwrap().to_string();
    let mut cfg = NodeConfig::cluster(4, dir.path().join("n4"), addr4.clone(), BTreeMap::new());
    cfg.join = true;
    let joiner = MetadataStore::start_with_listener(fast(cfg), Some(l4), common::logger())
        .await
        .unwrap();
    let r = leader.add_voter(4, addr4.clone()).await.unwrap();
    assert_eq!(r, CommandResult::MembershipChanged { voters: vec![1, 2, 3, 4] });
    let version = leader.state().version;
    let st = joiner.wait_for_version(version).await.unwrap();
    assert!(st.topics.contains_key("before-join"));
    assert_eq!(st.raft_peers.get(&4), Some(&addr4));
    assert_eq!(joiner.status().voters, vec![1, 2, 3, 4]);
    // The joiner takes part in replication from now on.
    leader.propose(create_topic("after-join", 1)).await.unwrap();
    let version = leader.state().version;
    assert!(joiner.wait_for_version(version).await.unwrap().topics.contains_key("after-join"));
    for s in stores.iter().chain([&joiner]) {
        s.shutdown().await;
    }
}
