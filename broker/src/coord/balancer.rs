//! The balancer's plan: which pchannels need a (new) owner, and which live broker gets each.
//! Pure: the same state and clock give the same plan, so it is tested without a cluster.

use sluice_raft::command::Command;
use sluice_raft::state::{AssignmentState, MetadataState};

/// Commands that give every orphaned pchannel an owner: a pchannel never assigned, marked
/// unavailable, or owned by a broker whose lease ran out goes to the live broker with the
/// fewest pchannels (then the fewest vchannels, then the lowest id). Pchannels whose owner is
/// live stay where they are, so placements are kept.
pub fn plan(state: &MetadataState, now_ms: i64) -> Vec<Command> {
    let live: Vec<i32> = state.live_brokers(now_ms).map(|b| b.broker_id).collect();
    if live.is_empty() {
        return Vec::new();
    }
    // (pchannels, vchannels) per live broker.
    let mut load: Vec<(i32, u32, u64)> = live.iter().map(|&id| (id, 0, 0)).collect();
    for pc in &state.pchannels {
        if let Some(owner) = pc
            .broker_id
            .filter(|_| pc.state != AssignmentState::Unavailable)
        {
            if let Some(l) = load.iter_mut().find(|l| l.0 == owner) {
                l.1 += 1;
                l.2 += u64::from(pc.vchannels);
            }
        }
    }
    let mut commands = Vec::new();
    for pc in &state.pchannels {
        let orphaned = match (pc.state, pc.broker_id) {
            (AssignmentState::Uninitialized | AssignmentState::Unavailable, _) | (_, None) => true,
            (_, Some(owner)) => !live.contains(&owner),
        };
        if !orphaned {
            continue;
        }
        let target = load
            .iter_mut()
            .min_by_key(|l| (l.1, l.2, l.0))
            .expect("at least one live broker");
        target.1 += 1;
        target.2 += u64::from(pc.vchannels);
        commands.push(Command::AssignPChannel {
            pchannel: pc.pchannel,
            broker_id: target.0,
            expected_term: pc.term,
        });
    }
    commands
}
