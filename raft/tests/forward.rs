//! Proposal forwarding over real TCP on loopback: a follower's `propose` goes to the leader,
//! resolves once applied on the follower itself, survives a leader failover without applying
//! anything twice, and fails within the request timeout when no leader can be reached.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::cluster::{create_topic, fast, leader_of, start_three, start_three_with, within};
use parking_lot::Mutex;
use sluice_raft::{Command, CommandError, CommandResult, Error, MetadataStore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followers_forward_proposals_and_read_their_writes() {
    let dir = tempfile::tempdir().unwrap();
    // At most 4 forwarded proposals in flight per node: the 32 concurrent ones below queue.
    let (stores, addrs) = start_three_with(dir.path(), |c| {
        let mut c = fast(c);
        c.max_forwarded = 4;
        c
    })
    .await;
    // Proposed before any leader is known: waits for the election, then goes through.
    let r = within(stores[1].propose(create_topic("early", 1)))
        .await
        .unwrap();
    assert!(matches!(r, CommandResult::PartitionsCreated { .. }));
    assert!(stores[1].state().topics.contains_key("early"));

    let l = leader_of(&stores).await;
    let followers: Vec<usize> = (0..3).filter(|&i| i != l).collect();
    for &f in &followers {
        let name = format!("from-{f}");
        let r = within(stores[f].propose(create_topic(&name, 2)))
            .await
            .unwrap();
        let CommandResult::PartitionsCreated { placement, .. } = r else {
            panic!("unexpected result {r:?}")
        };
        assert_eq!(placement.len(), 2);
        // The proposer's own applied state includes its write as soon as propose returns.
        let st = stores[f].state();
        assert_eq!(st.topics[&name].partitions.len(), 2);
        assert!(!stores[f].status().is_leader);
        // A rejection by the state machine comes back as such.
        assert!(matches!(
            within(stores[f].propose(create_topic(&name, 1))).await,
            Err(Error::Rejected(CommandError::TopicAlreadyExists(ref t))) if *t == name
        ));
    }
    // Many in flight from one follower (more than `max_forwarded`): all applied once.
    let f = followers[0];
    let tasks: Vec<_> = (0..32)
        .map(|i| {
            let s = stores[f].clone();
            tokio::spawn(async move { s.propose(create_topic(&format!("burst-{i}"), 1)).await })
        })
        .collect();
    for t in tasks {
        assert!(matches!(
            within(t).await.unwrap(),
            Ok(CommandResult::PartitionsCreated { .. })
        ));
    }
    let version = stores[f].state().version;
    for s in &stores {
        let st = within(s.wait_for_version(version)).await.unwrap();
        assert_eq!(st.topics.len(), 1 + 2 + 32);
    }
    // Garbage on the Raft port, as a forwarding frame and as an oversized one: the connection
    // is closed, the node keeps serving.
    let leader_addr = &addrs[&(l as u64 + 1)];
    for frame in [
        [&(0x8000_0000u32 | 5).to_le_bytes()[..], b"{oops"].concat(),
        0xffff_ffffu32.to_le_bytes().to_vec(),
    ] {
        let mut conn = tokio::net::TcpStream::connect(leader_addr).await.unwrap();
        conn.write_all(&frame).await.unwrap();
        let mut buf = [0u8; 1];
        assert_eq!(within(conn.read(&mut buf)).await.unwrap_or(0), 0, "closed");
    }
    // A broker registering through a follower, then heartbeating.
    let incarnation_id = Uuid::new_v4();
    let register = Command::RegisterBroker {
        broker_id: 7,
        incarnation_id,
        listeners: Vec::new(),
        rack: None,
        now_ms: 1_000,
        lease_ms: 10_000,
    };
    within(stores[f].propose(register)).await.unwrap();
    let beat = Command::BrokerHeartbeat {
        broker_id: 7,
        incarnation_id,
        now_ms: 2_000,
    };
    within(stores[f].propose(beat)).await.unwrap();
    assert_eq!(stores[f].state().brokers[&7].last_heartbeat_ms, 2_000);
    for s in &stores {
        s.shutdown().await;
    }
}

/// What the proposing loops saw: names acknowledged, and names with an uncertain fate.
#[derive(Default)]
struct Seen {
    ok: BTreeMap<String, Uuid>,
    uncertain: BTreeSet<String>,
}

/// Proposes distinct topics on `store` until `stop`; each `Ok` bumps `acks`.
async fn propose_loop(
    store: MetadataStore,
    prefix: String,
    seen: Arc<Mutex<Seen>>,
    acks: watch::Sender<usize>,
    stop: watch::Receiver<bool>,
) {
    let mut i = 0;
    while !*stop.borrow() {
        i += 1;
        let name = format!("{prefix}-{i}");
        let topic_id = Uuid::new_v4();
        let cmd = Command::CreateTopic {
            name: name.clone(),
            topic_id,
            partitions: 1,
            configs: BTreeMap::new(),
        };
        match store.propose(cmd).await {
            Ok(_) => {
                assert!(store.state().topics.contains_key(&name));
                seen.lock().ok.insert(name, topic_id);
                acks.send_modify(|n| *n += 1);
            }
            // A name is proposed once: a rejection would be a command applied twice.
            Err(Error::Rejected(e)) => panic!("{name} rejected: {e}"),
            Err(Error::Stopped) => return,
            // Forwarding hides `NotLeader`; what remains leaves the command's fate open.
            Err(e) => {
                assert!(
                    matches!(
                        e,
                        Error::Timeout(_) | Error::OutcomeUnknown | Error::ProposalDropped
                    ),
                    "{name}: {e}"
                );
                seen.lock().uncertain.insert(name);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proposals_resume_after_the_leader_stops_and_apply_once() {
    let dir = tempfile::tempdir().unwrap();
    let (stores, _) = start_three(dir.path()).await;
    let l = leader_of(&stores).await;
    let followers: Vec<MetadataStore> = (0..3)
        .filter(|&i| i != l)
        .map(|i| stores[i].clone())
        .collect();
    // Every entry the survivors apply from now on, to count applications per name.
    let mut feeds: Vec<_> = followers.iter().map(|f| f.changes()).collect();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut loops = Vec::new();
    let mut acks = Vec::new();
    for f in &followers {
        let (tx, rx) = watch::channel(0usize);
        let prefix = format!("n{}", f.status().node_id);
        let task = propose_loop(f.clone(), prefix, seen.clone(), tx, stop_rx.clone());
        loops.push(tokio::spawn(task));
        acks.push(rx);
    }
    // Both followers are writing through the leader; then it stops.
    for rx in &mut acks {
        within(rx.wait_for(|&n| n >= 5)).await.unwrap();
    }
    stores[l].shutdown().await;
    let before: Vec<usize> = acks.iter().map(|rx| *rx.borrow()).collect();
    // Both resume on the new leader (one of them, which then proposes locally).
    for (rx, n) in acks.iter_mut().zip(before) {
        within(rx.wait_for(|&m| m >= n + 5)).await.unwrap();
    }
    stop_tx.send(true).unwrap();
    for t in loops {
        within(t).await.unwrap();
    }
    let seen = std::mem::take(&mut *seen.lock());
    for f in &followers {
        let st = within(f.read()).await.unwrap();
        for (name, id) in &seen.ok {
            assert_eq!(
                st.topics[name].topic_id, *id,
                "{name} applied with its own id"
            );
        }
        // Nothing appears that nobody proposed; uncertain ones may or may not be there.
        for name in st.topics.keys() {
            assert!(seen.ok.contains_key(name) || seen.uncertain.contains(name));
        }
    }
    // A command applied twice would show in the change feed as a second entry with its name
    // (rejected as a duplicate). A survivor that caught up through a snapshot misses some
    // entries in its feed, so the feed can only show "at most once".
    for feed in &mut feeds {
        let mut applied: BTreeMap<String, usize> = BTreeMap::new();
        while let Ok(change) = feed.try_recv() {
            if let Some(Command::CreateTopic { name, .. }) = change.command {
                assert!(change.outcome.is_ok(), "{name}: {:?}", change.outcome);
                *applied.entry(name).or_default() += 1;
            }
        }
        assert!(applied.values().all(|&n| n == 1), "{applied:?}");
        assert!(!applied.is_empty(), "the feed saw the proposals");
    }
    for f in &followers {
        f.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_isolated_follower_fails_within_the_request_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let (stores, _) = start_three_with(dir.path(), |c| {
        let mut c = fast(c);
        c.request_timeout_ms = 1_500;
        c
    })
    .await;
    let l = leader_of(&stores).await;
    let f = (l + 1) % 3;
    within(stores[f].propose(create_topic("before", 1)))
        .await
        .unwrap();
    // The leader and the other follower stop: no leader can be elected.
    stores[l].shutdown().await;
    stores[(l + 2) % 3].shutdown().await;
    let start = Instant::now();
    let r = within(stores[f].propose(create_topic("after", 1))).await;
    let took = start.elapsed();
    assert!(
        matches!(r, Err(Error::Timeout(_) | Error::OutcomeUnknown)),
        "{r:?}"
    );
    assert!(took < Duration::from_millis(1_500 + 500), "took {took:?}");
    assert!(!stores[f].state().topics.contains_key("after"));
    stores[f].shutdown().await;
}
