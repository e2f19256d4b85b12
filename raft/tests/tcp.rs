//! The real runtime: a single node bootstrapping and restarting, and three nodes over TCP on
//! loopback electing a leader, replicating, and failing over when the leader stops.

mod common;

use common::cluster::{create_topic, fast, leader_of, propose_on_leader, start_three, within};
use sluice_raft::{Command, CommandError, CommandResult, Error, MetadataStore, NodeConfig};
use tokio::net::TcpListener;

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
    assert!(matches!(
        store.propose(Command::Noop).await,
        Err(Error::Stopped)
    ));

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_over_tcp_fail_over() {
    let dir = tempfile::tempdir().unwrap();
    let (stores, addrs) = start_three(dir.path()).await;
    let l = leader_of(&stores).await;
    let follower = (l + 1) % 3;
    assert_eq!(
        stores[follower].wait_for_leader().await.unwrap(),
        l as u64 + 1
    );
    // A follower forwards to the leader (tests/forward.rs has the details).
    assert_eq!(
        stores[follower].propose(Command::Noop).await.unwrap(),
        CommandResult::Done
    );
    let mut version = 0;
    for i in 0..20 {
        version = propose_on_leader(&stores, create_topic(&format!("t{i}"), 3))
            .await
            .1;
    }
    let l = leader_of(&stores).await;
    let follower = (l + 1) % 3;
    for s in &stores {
        let st = within(s.wait_for_version(version)).await.unwrap();
        assert_eq!(st.topics.len(), 20);
    }
    // A linearizable read on a follower sees everything acknowledged.
    assert_eq!(stores[follower].read().await.unwrap().topics.len(), 20);

    // Stop the leader: the other two elect a new one and writes continue.
    stores[l].shutdown().await;
    let rest: Vec<MetadataStore> = (0..3)
        .filter(|&i| i != l)
        .map(|i| stores[i].clone())
        .collect();
    let (_, version, r) = propose_on_leader(&rest, create_topic("after-failover", 1)).await;
    assert!(matches!(r, CommandResult::PartitionsCreated { .. }));
    for s in &rest {
        let st = within(s.wait_for_version(version)).await.unwrap();
        assert!(st.topics.contains_key("after-failover"));
        assert_eq!(st.topics.len(), 21);
    }
    // More writes while the old leader is down, enough for snapshots and log compaction.
    let mut version = 0;
    for i in 0..30 {
        version = propose_on_leader(&rest, create_topic(&format!("u{i}"), 1))
            .await
            .1;
    }

    // The old leader restarts from its directory on its old address and catches up (through
    // a snapshot: the others compacted their logs past its last entry).
    let id = l as u64 + 1;
    let cfg = NodeConfig::cluster(
        id,
        dir.path().join(format!("n{id}")),
        addrs[&id].clone(),
        addrs.clone(),
    );
    let back = MetadataStore::start(fast(cfg), common::logger())
        .await
        .unwrap();
    let st = within(back.wait_for_version(version)).await.unwrap();
    assert_eq!(st.topics.len(), 51);
    assert_eq!(
        st.topics,
        rest[0].wait_for_version(version).await.unwrap().topics
    );
    for s in rest.iter().chain([&back]) {
        s.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fourth_node_joins_over_tcp() {
    let dir = tempfile::tempdir().unwrap();
    let (stores, addrs) = start_three(dir.path()).await;
    propose_on_leader(&stores, create_topic("before-join", 2)).await;

    let l4 = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr4 = l4.local_addr().unwrap().to_string();
    // A joiner knows where the group is, but starts with no voters.
    let mut cfg = NodeConfig::cluster(4, dir.path().join("n4"), addr4.clone(), addrs);
    cfg.join = true;
    let joiner = MetadataStore::start_with_listener(fast(cfg), Some(l4), common::logger())
        .await
        .unwrap();
    let leader = stores[leader_of(&stores).await].clone();
    let r = leader.add_voter(4, addr4.clone()).await.unwrap();
    assert_eq!(
        r,
        CommandResult::MembershipChanged {
            voters: vec![1, 2, 3, 4]
        }
    );
    let version = leader.state().version;
    let st = within(joiner.wait_for_version(version)).await.unwrap();
    assert!(st.topics.contains_key("before-join"));
    assert_eq!(st.raft_peers.get(&4), Some(&addr4));
    assert_eq!(joiner.status().voters, vec![1, 2, 3, 4]);
    // The joiner takes part in replication from now on.
    let (_, version, _) = propose_on_leader(&stores, create_topic("after-join", 1)).await;
    assert!(
        within(joiner.wait_for_version(version))
            .await
            .unwrap()
            .topics
            .contains_key("after-join")
    );
    for s in stores.iter().chain([&joiner]) {
        s.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_reports_each_voters_progress() {
    let dir = tempfile::tempdir().unwrap();
    let (stores, _) = start_three(dir.path()).await;
    let (l, version, _) = propose_on_leader(&stores, create_topic("progress", 1)).await;
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    // Heartbeat answers keep coming: wait until every follower has answered since `before`
    // with its log caught up to the leader's.
    let mut status = stores[l].subscribe_status();
    let st = within(status.wait_for(|s| {
        s.is_leader
            && s.commit >= version
            && s.progress.len() == 3
            && s.progress.iter().all(|p| {
                p.node_id == s.node_id
                    || (p.matched == s.last_index
                        && p.last_contact_ms.is_some_and(|t| t >= before)
                        && p.last_caught_up_ms.is_some_and(|t| t >= before))
            })
    }))
    .await
    .unwrap()
    .clone();
    assert_eq!(
        st.progress.iter().map(|p| p.node_id).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    let me = st
        .progress
        .iter()
        .find(|p| p.node_id == st.node_id)
        .unwrap();
    assert_eq!(me.matched, st.last_index);
    assert_eq!(me.last_contact_ms, None);
    assert!(st.commit <= st.last_index);
    // Followers do not track progress.
    for (i, s) in stores.iter().enumerate() {
        if i != l {
            let f = s.status();
            assert!(f.progress.is_empty(), "follower {i}: {f:?}");
            assert!(f.commit >= 1 && f.last_index >= f.commit);
        }
    }
    for s in &stores {
        s.shutdown().await;
    }
}
