//! One consumer group's state (Kafka's `ConsumerGroup`): members, the group epoch (bumped when
//! membership, subscriptions or the subscribed topics change), the target assignment and its
//! epoch, and which member epoch owns each partition. Not persisted: after a coordinator move
//! or restart members get UNKNOWN_MEMBER_ID and rejoin, while committed offsets stay durable.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Instant;

use slog::{Logger, info};
use sluice_protocol::ResponseError as E;
use sluice_raft::state::TopicInfo;
use uuid::Uuid;

use super::assignor::{Assignor, MemberSpec, TopicSpec};
use super::member::{Assignment, ConsumerMember, CurrentAssignment, MemberState, is_internal};

/// The topics of the metadata, by name.
pub type Topics = Arc<BTreeMap<String, TopicInfo>>;

/// The group states Kafka reports for consumer groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsumerGroupState {
    /// No members.
    Empty,
    /// The group epoch moved past the target assignment's: a new one is due.
    Assigning,
    /// Some members have not reached the target assignment yet.
    Reconciling,
    /// Every member owns its target assignment.
    Stable,
}

impl ConsumerGroupState {
    /// The name in ListGroups and ConsumerGroupDescribe.
    pub fn name(self) -> &'static str {
        match self {
            ConsumerGroupState::Empty => "Empty",
            ConsumerGroupState::Assigning => "Assigning",
            ConsumerGroupState::Reconciling => "Reconciling",
            ConsumerGroupState::Stable => "Stable",
        }
    }
}

/// A consumer group.
pub struct ConsumerGroup {
    /// Grows whenever the target assignment must be recomputed.
    pub group_epoch: i32,
    /// The group epoch the target assignment was computed at.
    pub assignment_epoch: i32,
    /// Members by member id.
    pub members: BTreeMap<String, ConsumerMember>,
    /// `group.instance.id` → member id of static members.
    pub static_members: HashMap<String, String>,
    /// The target assignment of each member.
    pub target: HashMap<String, Assignment>,
    /// The epoch of the member owning (or revoking) each partition.
    partition_epochs: HashMap<(Uuid, i32), i32>,
    /// Topics any member subscribes to that exist: name → (id, partition count).
    pub subscribed: BTreeMap<String, (Uuid, i32)>,
    /// The metadata `subscribed` was computed from (kept, so a change is seen by identity).
    topics_seen: Option<Topics>,
    /// Logger with the group id.
    pub log: Logger,
}

impl ConsumerGroup {
    /// An empty group.
    pub fn new(log: &Logger) -> ConsumerGroup {
        ConsumerGroup {
            group_epoch: 0,
            assignment_epoch: 0,
            members: BTreeMap::new(),
            static_members: HashMap::new(),
            target: HashMap::new(),
            partition_epochs: HashMap::new(),
            subscribed: BTreeMap::new(),
            topics_seen: None,
            log: log.clone(),
        }
    }

    /// Kafka's state of the group.
    pub fn state(&self) -> ConsumerGroupState {
        if self.members.is_empty() {
            ConsumerGroupState::Empty
        } else if self.group_epoch > self.assignment_epoch {
            ConsumerGroupState::Assigning
        } else if self
            .members
            .values()
            .any(|m| !m.current.is_reconciled_to(self.assignment_epoch))
        {
            ConsumerGroupState::Reconciling
        } else {
            ConsumerGroupState::Stable
        }
    }

    /// The assignor the target assignment uses: the one most members ask for, else `default`
    /// (Kafka's `computePreferredServerAssignor`; ties go to the first in name order).
    pub fn preferred_assignor(&self, default: Assignor) -> Assignor {
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for m in self.members.values() {
            if let Some(a) = &m.server_assignor {
                *votes.entry(a.as_str()).or_default() += 1;
            }
        }
        let best = votes.values().copied().max().unwrap_or(0);
        votes
            .into_iter()
            .find(|(_, n)| *n == best && best > 0)
            .and_then(|(name, _)| Assignor::from_name(name))
            .unwrap_or(default)
    }

    /// The epoch of the member owning or revoking a partition, -1 if it is free.
    pub fn partition_epoch(&self, topic: &Uuid, partition: i32) -> i32 {
        self.partition_epochs
            .get(&(*topic, partition))
            .copied()
            .unwrap_or(-1)
    }

    /// Replaces a member's current assignment, keeping `partition_epochs` in step.
    pub(super) fn set_current(&mut self, member_id: &str, next: CurrentAssignment, now: Instant) {
        let Some(member) = self.members.get_mut(member_id) else {
            return;
        };
        for (topic, partitions) in member
            .current
            .assigned
            .iter()
            .chain(&member.current.pending_revocation)
        {
            for p in partitions {
                self.partition_epochs.remove(&(*topic, *p));
            }
        }
        for (topic, partitions) in next.assigned.iter().chain(&next.pending_revocation) {
            for p in partitions {
                let previous = self
                    .partition_epochs
                    .insert((*topic, *p), next.member_epoch);
                debug_assert!(
                    previous.is_none(),
                    "{topic}-{p} owned by two members of one group"
                );
            }
        }
        if next.member_epoch != member.current.member_epoch {
            member.previous_member_epoch = member.current.member_epoch;
        }
        // KIP-848: a member must revoke within its rebalance timeout of being asked to.
        let entering = next.state == MemberState::UnrevokedPartitions
            && (member.current.state != MemberState::UnrevokedPartitions
                || member.current.member_epoch != next.member_epoch);
        if entering {
            member.revocation_deadline = Some(now + member.rebalance_timeout);
        } else if next.state != MemberState::UnrevokedPartitions {
            member.revocation_deadline = None;
        }
        member.current = next;
    }

    /// Adds a member that is not in the group yet, with the partitions its `current` names.
    pub(super) fn put_member(&mut self, mut member: ConsumerMember, now: Instant) {
        let id = member.member_id.clone();
        debug_assert!(!self.members.contains_key(&id), "{id} added twice");
        if let Some(instance) = &member.instance_id {
            self.static_members.insert(instance.clone(), id.clone());
        }
        let current = std::mem::replace(&mut member.current, CurrentAssignment::joining());
        self.members.insert(id.clone(), member);
        self.set_current(&id, current, now);
    }

    /// Removes a member without bumping the group epoch (a static member replaced by its next
    /// incarnation); returns it as it was. Its partitions are free.
    pub(super) fn take_member(&mut self, member_id: &str) -> Option<ConsumerMember> {
        let current = self.members.get(member_id)?.current.clone();
        self.set_current(member_id, CurrentAssignment::joining(), Instant::now());
        let mut member = self.members.remove(member_id)?;
        member.current = current;
        if let Some(instance) = &member.instance_id
            && self.static_members.get(instance).map(String::as_str) == Some(member_id)
        {
            self.static_members.remove(instance);
        }
        Some(member)
    }

    /// Removes a member for good: its partitions are free, the group epoch grows so the others
    /// get a new target assignment (Kafka's `consumerGroupFenceMember`).
    pub fn fence(&mut self, member_id: &str, reason: &str) -> bool {
        let Some(member_epoch) = self.members.get(member_id).map(|m| m.member_epoch()) else {
            return false;
        };
        self.take_member(member_id);
        self.target.remove(member_id);
        if let Some(topics) = self.topics_seen.clone() {
            self.refresh_subscribed(&topics);
        }
        self.group_epoch += 1;
        info!(self.log, "{}", reason; "member_id" => member_id,
            "member_epoch" => member_epoch, "group_epoch" => self.group_epoch,
            "members" => self.members.len());
        true
    }

    /// Fences members whose session expired and members that did not revoke partitions within
    /// their rebalance timeout. Returns whether any was fenced.
    pub fn expire(&mut self, now: Instant) -> bool {
        let expired: Vec<(String, &'static str)> = self
            .members
            .values()
            .filter_map(|m| {
                if m.session_deadline <= now {
                    Some((m.member_id.clone(), "member session expired"))
                } else if m.revocation_deadline.is_some_and(|d| d <= now) {
                    Some((
                        m.member_id.clone(),
                        "member fenced: it did not revoke partitions within its rebalance timeout",
                    ))
                } else {
                    None
                }
            })
            .collect();
        for (id, reason) in &expired {
            self.fence(id, reason);
        }
        !expired.is_empty()
    }

    /// Recomputes the topics the members subscribe to from `topics`; true when they changed.
    pub(super) fn refresh_subscribed(&mut self, topics: &Topics) -> bool {
        let mut subscribed = BTreeMap::new();
        for m in self.members.values() {
            for name in &m.subscribed_topic_names {
                if let Some(info) = topics.get(name) {
                    subscribed.insert(name.clone(), describe(info));
                }
            }
            if let Some(regex) = &m.regex {
                for (name, info) in topics.iter() {
                    if !is_internal(name) && regex.is_match(name) {
                        subscribed.insert(name.clone(), describe(info));
                    }
                }
            }
        }
        self.topics_seen = Some(topics.clone());
        if subscribed == self.subscribed {
            false
        } else {
            self.subscribed = subscribed;
            true
        }
    }

    /// Whether `topics` differs from the metadata the subscriptions were resolved against.
    pub(super) fn topics_changed(&self, topics: &Topics) -> bool {
        self.topics_seen
            .as_ref()
            .is_none_or(|seen| !Arc::ptr_eq(seen, topics))
    }

    /// Computes the target assignment of every member for the current group epoch.
    pub(super) fn compute_target(&mut self, default: Assignor) {
        let assignor = self.preferred_assignor(default);
        let topics: BTreeMap<Uuid, TopicSpec> = self
            .subscribed
            .iter()
            .map(|(name, (id, partitions))| {
                (
                    *id,
                    TopicSpec {
                        name: name.clone(),
                        partitions: *partitions,
                    },
                )
            })
            .collect();
        let specs: BTreeMap<String, MemberSpec> = self
            .members
            .values()
            .map(|m| {
                let topics = self
                    .subscribed
                    .iter()
                    .filter(|(name, _)| m.subscribes_to(name))
                    .map(|(_, (id, _))| *id)
                    .collect();
                let previous = self.target.get(&m.member_id).cloned().unwrap_or_default();
                (m.member_id.clone(), MemberSpec { topics, previous })
            })
            .collect();
        self.target = assignor.assign(&specs, &topics).into_iter().collect();
        self.assignment_epoch = self.group_epoch;
        info!(self.log, "computed target assignment"; "group_epoch" => self.group_epoch,
            "assignor" => assignor.name(), "members" => self.members.len(),
            "topics" => self.subscribed.len());
    }

    /// The topics members subscribe to, by name (OffsetDelete refuses to delete their offsets).
    pub fn subscribed_topics(&self) -> BTreeSet<String> {
        let mut topics: BTreeSet<String> = self.subscribed.keys().cloned().collect();
        for m in self.members.values() {
            topics.extend(m.subscribed_topic_names.iter().cloned());
        }
        topics
    }

    /// Kafka's `ConsumerGroup.validateOffsetCommit`: without a member epoch only an empty group
    /// takes commits; a member commits at its current epoch (STALE_MEMBER_EPOCH otherwise) and,
    /// outside transactions (`api_version` is `None` for TxnOffsetCommit), with OffsetCommit v9+.
    pub fn check_commit(
        &self,
        member_id: &str,
        member_epoch: i32,
        api_version: Option<i16>,
    ) -> Result<(), i16> {
        if member_epoch < 0 && self.members.is_empty() {
            return Ok(());
        }
        if api_version.is_none() && member_epoch < 0 && member_id.is_empty() {
            return Ok(());
        }
        let member = self
            .members
            .get(member_id)
            .ok_or(E::UnknownMemberId.code())?;
        if api_version.is_some_and(|v| v < 9) {
            return Err(E::UnsupportedVersion.code());
        }
        if member_epoch != member.member_epoch() {
            return Err(E::StaleMemberEpoch.code());
        }
        Ok(())
    }

    /// Kafka's `ConsumerGroup.validateOffsetFetch`: a fetch naming a member must come from a
    /// current member at its current epoch.
    pub fn check_fetch(&self, member_id: Option<&str>, member_epoch: i32) -> Result<(), i16> {
        let Some(member_id) = member_id else {
            return if member_epoch < 0 {
                Ok(())
            } else {
                Err(E::UnknownMemberId.code())
            };
        };
        let member = self
            .members
            .get(member_id)
            .ok_or(E::UnknownMemberId.code())?;
        if member_epoch != member.member_epoch() {
            return Err(E::StaleMemberEpoch.code());
        }
        Ok(())
    }
}

fn describe(info: &TopicInfo) -> (Uuid, i32) {
    (
        info.topic_id,
        i32::try_from(info.partitions.len()).unwrap_or(i32::MAX),
    )
}
