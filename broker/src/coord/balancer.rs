//! The balancer's plan: which pchannels need an owner, and which live broker gets each.
//! Pure: the same state and clock give the same plan, so it is tested without a cluster.
//!
//! A pchannel's data lives on its owner's disk until pchannels are replicated, so the balancer
//! never hands a pchannel that has an owner to another broker: a never-assigned pchannel goes
//! to the least-loaded live broker; a pchannel whose owner's lease ran out becomes UNAVAILABLE
//! (its partitions report LEADER_NOT_AVAILABLE rather than reappear empty elsewhere); and an
//! unavailable pchannel goes back to its last owner when that broker is live again.

use sluice_raft::command::Command;
use sluice_raft::state::{AssignmentState, MetadataState, PChannelInfo};

/// The broker that last owned a pchannel, from its assignment history.
fn last_owner(pc: &PChannelInfo) -> Option<i32> {
    pc.broker_id
        .or_else(|| pc.history.iter().rev().find_map(|change| change.broker_id))
}

/// Commands that bring every pchannel's assignment in line with the live brokers; never-assigned
/// pchannels are placed only when `place_new` (the cluster has formed).
pub fn plan(state: &MetadataState, now_ms: i64, place_new: bool) -> Vec<Command> {
    let live: Vec<i32> = state.live_brokers(now_ms).map(|b| b.broker_id).collect();
    // (broker, pchannels, vchannels) per live broker.
    let mut load: Vec<(i32, u32, u64)> = live.iter().map(|&id| (id, 0, 0)).collect();
    for pc in &state.pchannels {
        if let Some(l) = pc
            .broker_id
            .and_then(|owner| load.iter_mut().find(|l| l.0 == owner))
        {
            l.1 += 1;
            l.2 += u64::from(pc.vchannels);
        }
    }
    let mut commands = Vec::new();
    for pc in &state.pchannels {
        let assign = |broker_id| Command::AssignPChannel {
            pchannel: pc.pchannel,
            broker_id,
            expected_term: pc.term,
        };
        match pc.state {
            AssignmentState::Uninitialized if !place_new => {}
            AssignmentState::Uninitialized => {
                let Some(target) = load.iter_mut().min_by_key(|l| (l.1, l.2, l.0)) else {
                    continue;
                };
                target.1 += 1;
                target.2 += u64::from(pc.vchannels);
                commands.push(assign(target.0));
            }
            AssignmentState::Assigning | AssignmentState::Assigned => {
                if pc.broker_id.is_none_or(|owner| !live.contains(&owner)) {
                    commands.push(Command::MarkPChannelUnavailable {
                        pchannel: pc.pchannel,
                        expected_term: pc.term,
                    });
                }
            }
            AssignmentState::Unavailable => {
                if let Some(owner) = last_owner(pc).filter(|o| live.contains(o)) {
                    commands.push(assign(owner));
                }
            }
        }
    }
    commands
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_raft::state::Listener;

    const LEASE: i64 = 10_000;

    fn register(state: &mut MetadataState, index: &mut u64, broker_id: i32, now_ms: i64) {
        *index += 1;
        let command = Command::RegisterBroker {
            broker_id,
            incarnation_id: uuid::Uuid::from_u128(broker_id as u128),
            listeners: vec![Listener {
                name: "PLAINTEXT".into(),
                host: "h".into(),
                port: 9092,
            }],
            rack: None,
            now_ms,
            lease_ms: LEASE,
        };
        state.apply(*index, &command).unwrap();
    }

    fn apply_all(state: &mut MetadataState, index: &mut u64, commands: Vec<Command>) {
        for c in commands {
            *index += 1;
            state.apply(*index, &c).unwrap();
        }
    }

    fn cluster(pchannels: u32) -> (MetadataState, u64) {
        let mut state = MetadataState::default();
        state
            .apply(
                1,
                &Command::InitCluster {
                    cluster_id: uuid::Uuid::nil(),
                    pchannels,
                },
            )
            .unwrap();
        (state, 1)
    }

    #[test]
    fn new_pchannels_are_spread_over_live_brokers() {
        let (mut state, mut index) = cluster(6);
        for b in 1..=3 {
            register(&mut state, &mut index, b, 0);
        }
        assert!(
            plan(&state, 1, false).is_empty(),
            "no placement before the cluster formed"
        );
        let commands = plan(&state, 1, true);
        assert_eq!(commands.len(), 6);
        apply_all(&mut state, &mut index, commands);
        for b in 1..=3 {
            assert_eq!(
                state
                    .pchannels
                    .iter()
                    .filter(|pc| pc.broker_id == Some(b))
                    .count(),
                2
            );
        }
        assert!(
            plan(&state, 2, true).is_empty(),
            "a balanced cluster needs no change"
        );
    }

    #[test]
    fn a_dead_owner_leaves_its_pchannels_unavailable_until_it_returns() {
        let (mut state, mut index) = cluster(4);
        register(&mut state, &mut index, 1, 0);
        register(&mut state, &mut index, 2, 0);
        let commands = plan(&state, 1, true);
        apply_all(&mut state, &mut index, commands);
        // Broker 2 stops heartbeating; broker 1 renews its lease.
        register(&mut state, &mut index, 1, LEASE + 5);
        let commands = plan(&state, LEASE + 10, true);
        assert_eq!(commands.len(), 2);
        assert!(
            commands
                .iter()
                .all(|c| matches!(c, Command::MarkPChannelUnavailable { .. }))
        );
        apply_all(&mut state, &mut index, commands);
        assert!(
            plan(&state, LEASE + 20, true).is_empty(),
            "no other broker takes broker 2's data"
        );
        // Broker 2 comes back: its pchannels return to it at a new term.
        register(&mut state, &mut index, 2, LEASE + 30);
        let before: Vec<u64> = state.pchannels.iter().map(|pc| pc.term).collect();
        let commands = plan(&state, LEASE + 31, true);
        assert_eq!(commands.len(), 2);
        apply_all(&mut state, &mut index, commands);
        for (pc, old_term) in state.pchannels.iter().zip(before) {
            assert!(pc.broker_id.is_some());
            if pc.broker_id == Some(2) {
                assert!(pc.term > old_term, "a returning owner serves at a new term");
            }
        }
    }
}
