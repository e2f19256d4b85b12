//! The reconciliation state machine of KIP-848 (Kafka's `CurrentAssignmentBuilder`): moves one
//! member from its current assignment towards its target assignment, one step per heartbeat.
//!
//! A partition leaves a member first (pending revocation, the member keeps its epoch), and only
//! reaches its next owner once the previous owner stopped reporting it in its owned partitions:
//! until then it is "unreleased" and the next owner waits for it at the new epoch.

use std::collections::BTreeSet;

use uuid::Uuid;

use super::member::{Assignment, CurrentAssignment, MemberState, intersects};

/// The epoch of the member currently owning (or revoking) a partition, or -1 when it is free.
pub trait PartitionEpochs {
    /// The owner's epoch, -1 if nobody owns the partition.
    fn epoch_of(&self, topic: &Uuid, partition: i32) -> i32;
}

impl<F: Fn(&Uuid, i32) -> i32> PartitionEpochs for F {
    fn epoch_of(&self, topic: &Uuid, partition: i32) -> i32 {
        self(topic, partition)
    }
}

/// The member's next state towards `target` at `target_epoch`, given the partitions it reported
/// owning (`None` when the heartbeat did not say). Returns `current` unchanged when it cannot
/// move yet.
pub fn next(
    current: &CurrentAssignment,
    target_epoch: i32,
    target: &Assignment,
    owned: Option<&Assignment>,
    epochs: &impl PartitionEpochs,
) -> CurrentAssignment {
    match current.state {
        MemberState::Stable => {
            if current.member_epoch == target_epoch {
                current.clone()
            } else {
                compute(
                    current,
                    current.member_epoch,
                    target_epoch,
                    target,
                    owned,
                    epochs,
                )
            }
        }
        MemberState::UnrevokedPartitions => {
            if owns_any(owned, &current.pending_revocation) {
                current.clone()
            } else {
                // Every pending partition is revoked: the member moves past its epoch.
                compute(
                    current,
                    current.member_epoch + 1,
                    target_epoch,
                    target,
                    owned,
                    epochs,
                )
            }
        }
        MemberState::UnreleasedPartitions => compute(
            current,
            current.member_epoch,
            target_epoch,
            target,
            owned,
            epochs,
        ),
    }
}

/// Whether the member may still own any of `partitions`; not knowing counts as owning.
fn owns_any(owned: Option<&Assignment>, partitions: &Assignment) -> bool {
    owned.is_none_or(|owned| intersects(owned, partitions))
}

/// Kafka's `computeNextAssignment`.
fn compute(
    current: &CurrentAssignment,
    member_epoch: i32,
    target_epoch: i32,
    target: &Assignment,
    owned: Option<&Assignment>,
    epochs: &impl PartitionEpochs,
) -> CurrentAssignment {
    let mut has_unreleased = false;
    let mut assigned = Assignment::new();
    let mut pending_revocation = Assignment::new();
    let mut pending_assignment = Assignment::new();
    let topics: BTreeSet<&Uuid> = target.keys().chain(current.assigned.keys()).collect();
    let empty = BTreeSet::new();
    for topic in topics {
        let wanted = target.get(topic).unwrap_or(&empty);
        let had = current.assigned.get(topic).unwrap_or(&empty);
        // Kept = had ∩ wanted; to revoke = had − kept; to add = wanted − kept, minus the
        // partitions another member has not released yet.
        let kept: BTreeSet<i32> = had.intersection(wanted).copied().collect();
        let revoke: BTreeSet<i32> = had.difference(&kept).copied().collect();
        let mut add: BTreeSet<i32> = wanted.difference(&kept).copied().collect();
        let before = add.len();
        add.retain(|p| epochs.epoch_of(topic, *p) == -1);
        has_unreleased |= add.len() != before;
        if !kept.is_empty() {
            assigned.insert(*topic, kept);
        }
        if !revoke.is_empty() {
            pending_revocation.insert(*topic, revoke);
        }
        if !add.is_empty() {
            pending_assignment.insert(*topic, add);
        }
    }
    if !pending_revocation.is_empty() && owns_any(owned, &pending_revocation) {
        // Revoke first, at the current epoch.
        return CurrentAssignment {
            state: MemberState::UnrevokedPartitions,
            member_epoch,
            assigned,
            pending_revocation,
        };
    }
    for (topic, partitions) in pending_assignment {
        assigned.entry(topic).or_default().extend(partitions);
    }
    CurrentAssignment {
        state: if has_unreleased {
            MemberState::UnreleasedPartitions
        } else {
            MemberState::Stable
        },
        member_epoch: target_epoch,
        assigned,
        pending_revocation: Assignment::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Uuid = Uuid::from_u128(7);
    const U: Uuid = Uuid::from_u128(8);

    fn parts(topic: Uuid, p: &[i32]) -> Assignment {
        if p.is_empty() {
            Assignment::new()
        } else {
            [(topic, p.iter().copied().collect())].into()
        }
    }

    fn state(s: MemberState, epoch: i32, assigned: &[i32], pending: &[i32]) -> CurrentAssignment {
        CurrentAssignment {
            state: s,
            member_epoch: epoch,
            assigned: parts(T, assigned),
            pending_revocation: parts(T, pending),
        }
    }

    fn free(_: &Uuid, _: i32) -> i32 {
        -1
    }

    #[test]
    fn a_stable_member_at_the_target_epoch_stays() {
        let cur = state(MemberState::Stable, 3, &[0, 1], &[]);
        assert_eq!(next(&cur, 3, &parts(T, &[0, 1, 2]), None, &free), cur);
    }

    #[test]
    fn free_partitions_are_added_at_the_target_epoch() {
        let cur = state(MemberState::Stable, 3, &[0, 1], &[]);
        let got = next(&cur, 4, &parts(T, &[0, 1, 2]), None, &free);
        assert_eq!(got, state(MemberState::Stable, 4, &[0, 1, 2], &[]));
    }

    #[test]
    fn partitions_leaving_are_revoked_before_the_epoch_moves() {
        let cur = state(MemberState::Stable, 3, &[0, 1, 2, 3], &[]);
        let target = parts(T, &[0, 1]);
        // The member still owns 2 and 3: it stays at epoch 3, asked to revoke them.
        let owned = parts(T, &[0, 1, 2, 3]);
        let revoking = next(&cur, 4, &target, Some(&owned), &free);
        assert_eq!(
            revoking,
            state(MemberState::UnrevokedPartitions, 3, &[0, 1], &[2, 3])
        );
        // Not knowing what the member owns counts as still owning.
        assert_eq!(next(&revoking, 4, &target, None, &free), revoking);
        // It still reports 3: nothing moves.
        let still = parts(T, &[0, 1, 3]);
        assert_eq!(next(&revoking, 4, &target, Some(&still), &free), revoking);
        // It reports only 0 and 1: it reaches epoch 4.
        let done = next(&revoking, 4, &target, Some(&target), &free);
        assert_eq!(done, state(MemberState::Stable, 4, &[0, 1], &[]));
    }

    #[test]
    fn a_member_that_already_dropped_the_partitions_skips_the_revocation_step() {
        let cur = state(MemberState::Stable, 3, &[0, 1, 2], &[]);
        let got = next(&cur, 4, &parts(T, &[0]), Some(&parts(T, &[0])), &free);
        assert_eq!(got, state(MemberState::Stable, 4, &[0], &[]));
    }

    #[test]
    fn partitions_still_owned_elsewhere_wait_until_released() {
        let cur = state(MemberState::Stable, 1, &[0], &[]);
        let target = parts(T, &[0, 1, 2]);
        // Partition 2 is still owned (or being revoked) by a member at epoch 1.
        let owner = |t: &Uuid, p: i32| if *t == T && p == 2 { 1 } else { -1 };
        let waiting = next(&cur, 2, &target, Some(&parts(T, &[0])), &owner);
        assert_eq!(
            waiting,
            state(MemberState::UnreleasedPartitions, 2, &[0, 1], &[])
        );
        // Still owned: the member stays unreleased at epoch 2.
        assert_eq!(next(&waiting, 2, &target, None, &owner), waiting);
        // Released: the member gets it and is stable.
        let got = next(&waiting, 2, &target, None, &free);
        assert_eq!(got, state(MemberState::Stable, 2, &[0, 1, 2], &[]));
    }

    #[test]
    fn revocation_and_waiting_combine_across_topics() {
        let cur = CurrentAssignment {
            state: MemberState::Stable,
            member_epoch: 5,
            assigned: [(T, [0, 1].into()), (U, [0].into())].into(),
            pending_revocation: Assignment::new(),
        };
        // The target drops topic U and adds T-2, which another member still owns.
        let target: Assignment = [(T, [0, 1, 2].into())].into();
        let owner = |t: &Uuid, p: i32| if *t == T && p == 2 { 5 } else { -1 };
        let owned = cur.assigned.clone();
        let revoking = next(&cur, 6, &target, Some(&owned), &owner);
        assert_eq!(revoking.state, MemberState::UnrevokedPartitions);
        assert_eq!(revoking.member_epoch, 5);
        assert_eq!(revoking.pending_revocation, parts(U, &[0]));
        // U-0 revoked; T-2 still elsewhere: epoch 6, waiting for it.
        let owned = parts(T, &[0, 1]);
        let waiting = next(&revoking, 6, &target, Some(&owned), &owner);
        assert_eq!(
            waiting,
            state(MemberState::UnreleasedPartitions, 6, &[0, 1], &[])
        );
    }
}
