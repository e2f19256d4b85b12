//! Cooperative rebalances (KIP-429) without waiting for heartbeats. A cooperative rebalance
//! moves a partition in two rounds: in the first, its owner is told to give it up (the leader's
//! assignment lacks it) and nobody gets it; the owner revokes it and rejoins at once, which
//! starts the second round, where it goes to its new owner. The members that revoke nothing
//! would learn of that second round only from their next Heartbeat, and the Java client restarts
//! its heartbeat timer when it joins, so a full `heartbeat.interval.ms` (3 s) after the first
//! round. Here the second round starts as soon as the first completes.
//!
//! When the leader's SyncGroup completes generation N of a group of protocol type `consumer`
//! and some member's assignment lacks partitions it declared as owned in its JoinGroup
//! subscription (`ConsumerProtocolSubscription` v1+), the group stores generation N as always,
//! answers the SyncGroups of the members that revoke with their assignments, and moves straight
//! to PreparingRebalance: the other members' SyncGroups get REBALANCE_IN_PROGRESS and they rejoin
//! at once, keeping the partitions they own. A revoking member whose SyncGroup comes in after
//! that still gets its generation-N assignment ([`Group::assignments_due`]).
//!
//! Why the next round is certain: under the cooperative protocol a member whose assignment
//! lacks partitions it owns revokes them and rejoins (the Java client's
//! `ConsumerCoordinator.onJoinComplete`; librdkafka once its incremental unassign is done), and
//! its JoinGroup then carries changed metadata (its owned partitions), which starts a rebalance
//! in Kafka's coordinator too. Eager assignors revoke everything before joining, so their owned
//! partitions are empty and this never applies; a client declaring owned partitions under an
//! eager assignor would only see one more round than needed.
//!
//! Why no partition has two owners. Let `A(m)` be member m's generation-N assignment and `O(m)`
//! the partitions it declared owned, which it holds until a SyncGroup answer changes them. Both
//! clients' cooperative leaders assign no partition that one member declared owned to another
//! member in the same round (Java's `validateCooperativeAssignment`, librdkafka's
//! `rd_kafka_cooperative_protocol_adjust_assignment`), so a partition in `O(m) \ A(m)` is in no
//! `A(m')`. After this step each member holds `A(m)` (revoking members, and members whose
//! assignment was answered as usual) or `O(m)` (the others, for whom `O(m) ⊆ A(m)` since they
//! revoke nothing). The `A` sets are disjoint, and so are these holdings; each member declares
//! exactly its holdings when it rejoins, so round N+1's leader sees no conflicting claims.
//!
//! Generations stay consistent: generation N completed and was stored; N+1 forms only once
//! every member rejoined (or the rebalance timeout removed it), as in any rebalance, and
//! Heartbeats and OffsetCommits carrying N are accepted meanwhile. Members refused in SyncGroup
//! keep generation N (the Java client takes it from JoinGroup) or their last assigned one
//! (librdkafka's sticky assignor); either way their claims are uncontested and kept.
//!
//! Every answer a client sees is one Kafka's coordinator gives under other timing: the revoking
//! members' SyncGroups arriving before, and the others' after, the rebalance a revoking member's
//! rejoin starts. The only difference is that the coordinator does not wait for that rejoin.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use bytes::Bytes;
use slog::info;
use sluice_protocol::consumer_protocol::{decode_assignment, decode_subscription};

use super::state::Group;

impl Group {
    /// The members that the leader's `assignments` make give up partitions they declared as
    /// owned, when there are any. `None` as well when the group's protocol type is not
    /// `consumer` or a subscription or assignment does not decode: then nothing special happens.
    pub(super) fn revoking_members(
        &self,
        assignments: &[(String, Bytes)],
    ) -> Option<HashSet<String>> {
        if self.protocol_type.as_deref() != Some("consumer") {
            return None;
        }
        let protocol = self.protocol.as_deref()?;
        let mut revoking = HashSet::new();
        for m in self.members.values() {
            let subscription = decode_subscription(&m.metadata(protocol)).ok()?;
            let owned: Vec<_> = subscription
                .owned_partitions
                .iter()
                .flat_map(|t| t.partitions.iter().map(|p| (t.topic.0.clone(), *p)))
                .collect();
            if owned.is_empty() {
                continue;
            }
            let assignment = assignments
                .iter()
                .find(|(id, _)| *id == m.member_id)
                .map(|(_, a)| a.clone())
                .unwrap_or_default();
            let assigned: HashSet<_> = decode_assignment(&assignment)
                .ok()?
                .assigned_partitions
                .iter()
                .flat_map(|t| t.partitions.iter().map(|p| (t.topic.0.clone(), *p)))
                .collect();
            if owned.iter().any(|p| !assigned.contains(p)) {
                revoking.insert(m.member_id.clone());
            }
        }
        (!revoking.is_empty()).then_some(revoking)
    }

    /// Completes a round some members leave by revoking partitions: the next one starts now.
    /// `due` are revoking members whose SyncGroup has not arrived yet.
    pub(super) fn continue_rebalance(&mut self, revoking: usize, due: Vec<String>, now: Instant) {
        info!(self.log, "rebalance continues at once: members revoke partitions";
            "generation" => self.generation, "revoking" => revoking,
            "members" => self.members.len());
        self.assignments_due = due.into_iter().collect();
        self.prepare_rebalance(now, Duration::ZERO, "members revoke partitions");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::group::membership::JoinRequest;
    use crate::group::state::{GroupState, JoinOutcome, SyncOutcome, code};
    use bytes::{BufMut, BytesMut};
    use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as AssignedTp;
    use kafka_protocol::messages::consumer_protocol_subscription::TopicPartition as OwnedTp;
    use kafka_protocol::messages::{
        ConsumerProtocolAssignment, ConsumerProtocolSubscription, TopicName,
    };
    use kafka_protocol::protocol::{Encodable, StrBytes};
    use sluice_protocol::ResponseError as E;
    use tokio::sync::oneshot::Receiver;

    fn encoded<M: Encodable>(message: &M, version: i16) -> Bytes {
        let mut buf = BytesMut::new();
        buf.put_i16(version);
        message.encode(&mut buf, version).unwrap();
        buf.freeze()
    }

    fn topic() -> TopicName {
        TopicName(StrBytes::from_static_str("t"))
    }

    /// A v3 subscription to topic `t` declaring `owned` partitions of it.
    fn subscription(owned: &[i32]) -> Bytes {
        let owned = if owned.is_empty() {
            Vec::new()
        } else {
            vec![
                OwnedTp::default()
                    .with_topic(topic())
                    .with_partitions(owned.to_vec()),
            ]
        };
        let s = ConsumerProtocolSubscription::default()
            .with_topics(vec![StrBytes::from_static_str("t")])
            .with_owned_partitions(owned)
            .with_generation_id(1);
        encoded(&s, 3)
    }

    fn assignment(partitions: &[i32]) -> Bytes {
        let a = ConsumerProtocolAssignment::default().with_assigned_partitions(vec![
            AssignedTp::default()
                .with_topic(topic())
                .with_partitions(partitions.to_vec()),
        ]);
        encoded(&a, 3)
    }

    fn request(member_id: &str, metadata: Bytes, protocol_type: &str) -> JoinRequest {
        JoinRequest {
            member_id: member_id.into(),
            group_instance_id: None,
            client_id: "client".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout: Duration::from_secs(45),
            rebalance_timeout: Duration::from_secs(30),
            protocol_type: protocol_type.into(),
            protocols: vec![("cooperative-sticky".into(), metadata)],
            require_known_member_id: false,
            reason: None,
        }
    }

    fn ready<T>(mut rx: Receiver<T>) -> T {
        rx.try_recv().expect("answered")
    }

    /// `b` joins a group `a` had alone (with partitions 0-3): both are in CompletingRebalance of
    /// generation 2, `a` leading, with the metadata given.
    fn joined(
        protocol_type: &str,
        a_metadata: Bytes,
        b_metadata: Bytes,
    ) -> (Group, String, String, Instant) {
        let now = Instant::now();
        let mut g = Group::new("g", 0, &slog::Logger::root(slog::Discard, slog::o!()));
        let a = ready(g.join(
            request("", subscription(&[]), protocol_type),
            now,
            Duration::ZERO,
        ))
        .member_id;
        let all = vec![(a.clone(), assignment(&[0, 1, 2, 3]))];
        ready(g.sync(&a, None, 1, None, None, all, now).0);
        assert_eq!(g.state, GroupState::Stable);
        let mut join_b = g.join(request("", b_metadata, protocol_type), now, Duration::ZERO);
        let joined_a: JoinOutcome =
            ready(g.join(request(&a, a_metadata, protocol_type), now, Duration::ZERO));
        let b = join_b.try_recv().unwrap().member_id;
        assert_eq!(
            (joined_a.generation_id, g.state),
            (2, GroupState::CompletingRebalance)
        );
        (g, a, b, now)
    }

    fn sync(
        g: &mut Group,
        id: &str,
        all: Vec<(String, Bytes)>,
        now: Instant,
    ) -> Receiver<SyncOutcome> {
        let generation = g.generation;
        g.sync(id, None, generation, None, None, all, now).0
    }

    #[test]
    fn a_round_that_revokes_starts_the_next_at_once() {
        let (mut g, a, b, now) = joined("consumer", subscription(&[0, 1, 2, 3]), subscription(&[]));
        let mut follower = sync(&mut g, &b, Vec::new(), now);
        assert!(follower.try_recv().is_err(), "waits for the leader");
        // Round one: `a` gives up 2 and 3, which nobody gets yet.
        let round_one = vec![
            (a.clone(), assignment(&[0, 1])),
            (b.clone(), assignment(&[])),
        ];
        let leader = ready(sync(&mut g, &a, round_one, now));
        assert_eq!(
            (leader.error_code, leader.assignment),
            (0, assignment(&[0, 1]))
        );
        assert_eq!(ready(follower).error_code, code(E::RebalanceInProgress));
        assert_eq!((g.state, g.generation), (GroupState::PreparingRebalance, 2));
        // Generation 2 stays valid while generation 3 forms: heartbeats learn of the rebalance
        // and commits are accepted.
        assert_eq!(g.heartbeat(&b, None, 2, now), code(E::RebalanceInProgress));
        assert_eq!(g.check_commit(&a, None, 2), Ok(()));

        // Round two: both rejoin, declaring what they hold now.
        let mut join_a = g.join(
            request(&a, subscription(&[0, 1]), "consumer"),
            now,
            Duration::ZERO,
        );
        assert!(join_a.try_recv().is_err(), "waits for b");
        let joined_b = ready(g.join(
            request(&b, subscription(&[]), "consumer"),
            now,
            Duration::ZERO,
        ));
        assert_eq!(joined_b.generation_id, 3);
        let follower = sync(&mut g, &b, Vec::new(), now);
        let round_two = vec![
            (a.clone(), assignment(&[0, 1])),
            (b.clone(), assignment(&[2, 3])),
        ];
        assert_eq!(
            ready(sync(&mut g, &a, round_two, now)).assignment,
            assignment(&[0, 1])
        );
        assert_eq!(ready(follower).assignment, assignment(&[2, 3]));
        assert_eq!((g.state, g.generation), (GroupState::Stable, 3));
    }

    #[test]
    fn late_syncs_get_the_answer_they_would_have_got() {
        // A member revoking nothing syncs after the leader: it is told of the next round.
        let (mut g, a, b, now) = joined("consumer", subscription(&[0, 1, 2, 3]), subscription(&[]));
        let round_one = vec![
            (a.clone(), assignment(&[0, 1])),
            (b.clone(), assignment(&[])),
        ];
        ready(sync(&mut g, &a, round_one, now));
        assert_eq!(
            ready(sync(&mut g, &b, Vec::new(), now)).error_code,
            code(E::RebalanceInProgress)
        );

        // A revoking member syncs after the leader (which revokes nothing): it still gets its
        // assignment.
        let (mut g, a, b, now) =
            joined("consumer", subscription(&[0, 1, 2, 3]), subscription(&[4]));
        let round_one = vec![
            (a.clone(), assignment(&[0, 1, 2, 3])),
            (b.clone(), assignment(&[])),
        ];
        assert_eq!(
            ready(sync(&mut g, &a, round_one, now)).error_code,
            code(E::RebalanceInProgress)
        );
        assert_eq!(g.state, GroupState::PreparingRebalance);
        let late = ready(sync(&mut g, &b, Vec::new(), now));
        assert_eq!((late.error_code, late.assignment), (0, assignment(&[])));
        // Only once: a repeated SyncGroup is told about the rebalance.
        assert_eq!(
            ready(sync(&mut g, &b, Vec::new(), now)).error_code,
            code(E::RebalanceInProgress)
        );
    }

    #[test]
    fn nothing_special_without_revocations_or_decodable_metadata() {
        // Nobody revokes: the group is Stable as usual.
        let (mut g, a, b, now) = joined("consumer", subscription(&[0, 1, 2, 3]), subscription(&[]));
        let follower = sync(&mut g, &b, Vec::new(), now);
        let all = vec![
            (a.clone(), assignment(&[0, 1, 2, 3])),
            (b.clone(), assignment(&[])),
        ];
        ready(sync(&mut g, &a, all, now));
        assert_eq!(ready(follower).error_code, 0);
        assert_eq!(g.state, GroupState::Stable);

        // Revocations, but another protocol type, or metadata that does not decode.
        for (protocol_type, metadata) in [
            ("connect", subscription(&[0, 1, 2, 3])),
            (
                "consumer",
                Bytes::from_static(&[0, 1, 0x7f, 0xff, 0xff, 0xff]),
            ),
        ] {
            let (mut g, a, b, now) = joined(protocol_type, metadata, subscription(&[]));
            let follower = sync(&mut g, &b, Vec::new(), now);
            let all = vec![
                (a.clone(), assignment(&[0, 1])),
                (b.clone(), assignment(&[])),
            ];
            ready(sync(&mut g, &a, all, now));
            assert_eq!(ready(follower).error_code, 0, "{protocol_type}");
            assert_eq!(g.state, GroupState::Stable, "{protocol_type}");
        }
        // An undecodable assignment for a member that owns partitions.
        let (mut g, a, b, now) = joined("consumer", subscription(&[0, 1, 2, 3]), subscription(&[]));
        let all = vec![
            (a.clone(), Bytes::from_static(b"?")),
            (b.clone(), assignment(&[])),
        ];
        ready(sync(&mut g, &a, all, now));
        assert_eq!(g.state, GroupState::Stable);
    }
}
