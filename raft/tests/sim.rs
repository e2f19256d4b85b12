//! Clusters of 3 and 5 peers over a simulated lossy network with crashes and restarts.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{Faults, Sim};
use rand::Rng;
use sluice_raft::command::{Command, CommandResult};
use uuid::Uuid;

fn create_topic(n: u64) -> Command {
    Command::CreateTopic {
        name: format!("topic-{n}"),
        topic_id: Uuid::from_u128(n as u128 + 1),
        partitions: 3,
        configs: BTreeMap::new(),
    }
}

fn wait_leader(sim: &mut Sim) -> u64 {
    assert!(
        sim.run_until(2_000, |s| s.leader().is_some()),
        "no leader elected"
    );
    sim.leader().unwrap()
}

/// Random proposals, drops, delays, partitions and crashes; then heal and check that every
/// peer applied the same entries and that every acknowledged topic exists.
fn chaos(n: u64, seed: u64) {
    let mut sim = Sim::new(n, seed, |c| {
        c.snapshot_interval = 150;
        c.snapshot_keep = 5;
    });
    sim.faults = Faults {
        drop: 0.1,
        max_delay: 3,
        crash_after_persist: 0.002,
    };
    let mut next_topic = 0u64;
    let mut proposals: BTreeMap<(u64, u64), u64> = BTreeMap::new();
    for step in 0..3_000u64 {
        sim.round();
        let r: f64 = sim.rng.random();
        if r < 0.3 {
            if let Some(l) = sim.leader() {
                let cmd = create_topic(next_topic);
                if let Ok(pid) = sim.peer(l).propose(&cmd) {
                    proposals.insert((l, pid), next_topic);
                    next_topic += 1;
                }
            }
        } else if r < 0.31 {
            // Crash a random peer, keeping a majority up.
            let up = sim.up();
            if up.len() as u64 > n / 2 + 1 {
                let victim = up[sim.rng.random_range(0..up.len())];
                sim.crash(victim);
            }
        } else if r < 0.33 {
            let down: Vec<u64> = (1..=n).filter(|id| !sim.up().contains(id)).collect();
            if !down.is_empty() {
                let id = down[sim.rng.random_range(0..down.len())];
                sim.restart(id);
            }
        } else if r < 0.335 && sim.groups.is_empty() {
            let mut minority = BTreeSet::new();
            while (minority.len() as u64) < n / 2 {
                minority.insert(sim.rng.random_range(1..=n));
            }
            let majority: BTreeSet<u64> = (1..=n).filter(|i| !minority.contains(i)).collect();
            sim.groups = vec![minority, majority];
        } else if r < 0.345 {
            sim.groups.clear();
        }
        if step % 500 == 0 {
            sim.faults.drop = sim.rng.random_range(0.0..0.3);
        }
    }
    // Heal everything.
    sim.groups.clear();
    sim.faults = Faults {
        drop: 0.0,
        max_delay: 1,
        crash_after_persist: 0.0,
    };
    for id in 1..=n {
        if !sim.up().contains(&id) {
            sim.restart(id);
        }
    }
    // Progress after healing: a fresh proposal commits everywhere.
    let l = wait_leader(&mut sim);
    let pid = loop {
        let l = sim.leader().unwrap_or(l);
        if let Ok(pid) = sim.peer(l).propose(&Command::Noop) {
            break (l, pid);
        }
        sim.round();
    };
    assert!(
        sim.run_until(3_000, |s| s.acked.contains_key(&pid)),
        "no progress after healing"
    );
    let target = sim.max_version();
    if !sim.run_until(3_000, |s| s.converged(target)) {
        let v: Vec<_> = sim
            .peers
            .iter()
            .flatten()
            .map(|p| {
                (
                    p.id(),
                    p.state().version,
                    p.snapshot_index(),
                    p.first_index(),
                )
            })
            .collect();
        panic!("peers did not converge on {target}: (id, applied, snapshot, first index) {v:?}");
    }

    let state = sim.peer(1).state().clone();
    let mut acked_topics = 0;
    for (key, topic) in &proposals {
        if let Some((_, Ok(CommandResult::PartitionsCreated { .. }))) = sim.acked.get(key) {
            acked_topics += 1;
            assert!(
                state.topics.contains_key(&format!("topic-{topic}")),
                "acknowledged topic-{topic} lost"
            );
        }
    }
    assert!(
        acked_topics > 20,
        "too little progress: {acked_topics} topics acknowledged"
    );
    // Every applied entry is the same everywhere: checked on every Ready by `Sim`. Placement
    // spreads each topic over distinct pchannels.
    for t in state.topics.values() {
        let p: BTreeSet<u32> = t.partitions.iter().map(|p| p.pchannel).collect();
        assert_eq!(p.len(), t.partitions.len());
    }
}

#[test]
fn chaos_three_nodes() {
    for seed in 0..8 {
        chaos(3, seed);
    }
}

#[test]
fn chaos_five_nodes() {
    for seed in 10..14 {
        chaos(5, seed);
    }
}

#[test]
fn restart_all_nodes_keeps_state() {
    let mut sim = Sim::new(3, 7, |c| c.snapshot_interval = 25);
    let l = wait_leader(&mut sim);
    let mut pids = Vec::new();
    for i in 0..60 {
        pids.push(sim.peer(l).propose(&create_topic(i)).unwrap());
        sim.round();
    }
    assert!(sim.run_until(500, |s| pids.iter().all(|p| s.acked.contains_key(&(l, *p)))));
    let target = sim.max_version();
    assert!(sim.run_until(500, |s| s.converged(target)));
    let before = sim.peer(1).state().clone();
    assert!(sim.peer(1).snapshot_index() > 0, "snapshots were taken");
    for id in 1..=3 {
        sim.crash(id);
    }
    for id in 1..=3 {
        sim.restart(id);
    }
    // The applied state is rebuilt from snapshot + log once a leader commits again.
    let l = wait_leader(&mut sim);
    assert!(sim.run_until(500, |s| s.converged(target)));
    let after = sim.peer(l).state().clone();
    assert_eq!(after.topics, before.topics);
    assert_eq!(after.cluster, before.cluster);
    assert_eq!(after.topics.len(), 60);
}

#[test]
fn lagging_node_catches_up_through_snapshot() {
    let mut sim = Sim::new(3, 3, |c| {
        c.snapshot_interval = 20;
        c.snapshot_keep = 2;
    });
    let l = wait_leader(&mut sim);
    let lagger = (1..=3).find(|&id| id != l).unwrap();
    sim.crash(lagger);
    let mut pids = Vec::new();
    for i in 0..100 {
        pids.push(sim.peer(l).propose(&create_topic(i)).unwrap());
        sim.round();
    }
    assert!(sim.run_until(500, |s| pids.iter().all(|p| s.acked.contains_key(&(l, *p)))));
    assert!(
        sim.peer(l).first_index() > 2,
        "the leader compacted its log"
    );
    sim.restart(lagger);
    let target = sim.max_version();
    assert!(
        sim.run_until(1_000, |s| s.converged(target)),
        "lagger did not catch up"
    );
    assert!(
        sim.peer(lagger).snapshot_index() > 0,
        "caught up through a snapshot"
    );
    assert_eq!(sim.peer(lagger).state().topics.len(), 100);
    // The lagger keeps working after the snapshot: restart it once more.
    sim.crash(lagger);
    sim.restart(lagger);
    assert!(sim.run_until(1_000, |s| s.converged(target)));
}

#[test]
fn membership_add_and_remove_voter() {
    let mut sim = Sim::new(3, 5, |_| {});
    let l = wait_leader(&mut sim);
    let victim = (1..=3).find(|&id| id != l).unwrap();
    let pid = sim.peer(l).propose_membership(victim, None).unwrap();
    assert!(sim.run_until(500, |s| s.acked.contains_key(&(l, pid))));
    let (_, outcome) = sim.acked[&(l, pid)].clone();
    let CommandResult::MembershipChanged { voters } = outcome.unwrap() else {
        panic!("unexpected outcome")
    };
    assert_eq!(voters.len(), 2);
    assert!(!voters.contains(&victim));
    // Two voters still commit.
    let l = sim.leader().unwrap();
    let pid = sim.peer(l).propose(&create_topic(1)).unwrap();
    assert!(sim.run_until(500, |s| s.acked.contains_key(&(l, pid))));
    // Add it back with an address recorded in the state.
    let l = sim.leader().unwrap();
    let pid = sim
        .peer(l)
        .propose_membership(victim, Some("127.0.0.1:1".into()))
        .unwrap();
    assert!(sim.run_until(500, |s| s.acked.contains_key(&(l, pid))));
    assert_eq!(sim.peer(l).voters().len(), 3);
    assert_eq!(
        sim.peer(l)
            .state()
            .raft_peers
            .get(&victim)
            .map(String::as_str),
        Some("127.0.0.1:1")
    );
}

#[test]
fn fresh_node_joins_and_catches_up_through_snapshot() {
    let mut sim = Sim::new(3, 9, |c| {
        c.snapshot_interval = 20;
        c.snapshot_keep = 2;
    });
    let l = wait_leader(&mut sim);
    let mut pids = Vec::new();
    for i in 0..50 {
        pids.push(sim.peer(l).propose(&create_topic(i)).unwrap());
        sim.round();
    }
    assert!(sim.run_until(500, |s| pids.iter().all(|p| s.acked.contains_key(&(l, *p)))));
    let joiner = sim.add_joiner();
    let pid = sim
        .peer(l)
        .propose_membership(joiner, Some("127.0.0.1:4".into()))
        .unwrap();
    assert!(sim.run_until(500, |s| s.acked.contains_key(&(l, pid))));
    let target = sim.max_version();
    assert!(
        sim.run_until(1_000, |s| s.converged(target)),
        "joiner did not catch up"
    );
    assert_eq!(sim.peer(joiner).voters(), vec![1, 2, 3, 4]);
    assert_eq!(sim.peer(joiner).state().topics.len(), 50);
    // Four voters: losing one still leaves a quorum of three.
    let other = (1..=3).find(|&id| id != l).unwrap();
    sim.crash(other);
    let pid = sim.peer(l).propose(&create_topic(99)).unwrap();
    assert!(sim.run_until(500, |s| s.acked.contains_key(&(l, pid))));
}

/// The peer-level half of proposal forwarding: an entry a leader proposes for a follower
/// carries the follower's tag, so the follower recognizes it when applying it; and an entry
/// the old leader appended alone is never applied once an entry of a later term is.
#[test]
fn forwarded_entries_are_recognized_by_their_origin() {
    let mut sim = Sim::new(3, 11, |_| {});
    let l = wait_leader(&mut sim);
    let f = (1..=3).find(|&id| id != l).unwrap();
    let rid = sim.peer(f).next_proposal();
    let pid = sim.peer(l).propose_for(&create_topic(1), f, rid).unwrap();
    assert!(sim.run_until(500, |s| s.originated.contains_key(&(f, rid))
        && s.acked.contains_key(&(l, pid))));
    assert_eq!(sim.originated[&(f, rid)], sim.acked[&(l, pid)]);
    assert!(matches!(
        sim.originated[&(f, rid)].1,
        Ok(CommandResult::PartitionsCreated { .. })
    ));

    // The leader is cut off right after appending a forwarded command.
    let term = sim.peer(f).term();
    let rid = sim.peer(f).next_proposal();
    sim.peer(l).propose_for(&create_topic(2), f, rid).unwrap();
    let others: BTreeSet<u64> = (1..=3).filter(|&id| id != l).collect();
    sim.groups = vec![BTreeSet::from([l]), others.clone()];
    assert!(sim.run_until(2_000, |s| {
        s.leader().is_some_and(|n| others.contains(&n))
            && s.peers[f as usize - 1]
                .as_ref()
                .is_some_and(|p| p.applied_term() > term)
    }));
    // A later term applied without it on the origin: it is gone for good, even after healing.
    assert!(!sim.originated.contains_key(&(f, rid)));
    sim.groups.clear();
    let version = sim.max_version();
    assert!(sim.run_until(2_000, |s| s.converged(version)));
    let n = sim.leader().unwrap();
    let pid = sim.peer(n).propose(&create_topic(3)).unwrap();
    assert!(sim.run_until(500, |s| s.acked.contains_key(&(n, pid))));
    assert!(!sim.originated.contains_key(&(f, rid)));
    let names: Vec<String> = sim
        .global
        .values()
        .filter_map(|(c, _)| match c {
            Some(Command::CreateTopic { name, .. }) => Some(name.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(!names.contains(&"topic-2".to_string()));
}
