//! A group id is either a classic group or a consumer group (KIP-848), never both: an empty
//! group of one type becomes the other when a member of the other protocol joins (Kafka deletes
//! the empty group and creates the new one; committed offsets stay), and a group with members
//! refuses the other protocol. The checks that depend on the type live here too.

use std::time::Instant;

use slog::info;
use sluice_protocol::ResponseError as E;

use super::consumer::{
    ConsumerGroup, HeartbeatError, HeartbeatRequest, HeartbeatResponse, Settings, Topics,
};
use super::state::{Group, GroupState};

/// Kafka's group types, as ListGroups v5 names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupType {
    /// JoinGroup/SyncGroup members.
    Classic,
    /// ConsumerGroupHeartbeat members.
    Consumer,
}

impl GroupType {
    /// The name in ListGroups (`classic`, `consumer`).
    pub fn name(self) -> &'static str {
        match self {
            GroupType::Classic => "classic",
            GroupType::Consumer => "consumer",
        }
    }
}

impl Group {
    /// The group's type.
    pub fn group_type(&self) -> GroupType {
        if self.consumer.is_some() {
            GroupType::Consumer
        } else {
            GroupType::Classic
        }
    }

    /// Whether the group has members of either protocol (or classic members joining).
    pub fn has_members(&self) -> bool {
        !self.members.is_empty()
            || !self.pending.is_empty()
            || self.state != GroupState::Empty && self.state != GroupState::Dead
            || self
                .consumer
                .as_ref()
                .is_some_and(|c| !c.members.is_empty())
    }

    /// The state ListGroups reports: a consumer group's (`Empty`, `Assigning`, `Reconciling`,
    /// `Stable`) or the classic one.
    pub fn state_name(&self) -> &'static str {
        match &self.consumer {
            Some(c) if self.state != GroupState::Dead => c.state().name(),
            _ => self.state.name(),
        }
    }

    /// The protocol type ListGroups reports (Kafka's `ConsumerGroup.asListedGroup`: `consumer`).
    pub fn listed_protocol_type(&self) -> &str {
        match &self.consumer {
            Some(_) => "consumer",
            None => self.protocol_type.as_deref().unwrap_or(""),
        }
    }

    /// Handles a ConsumerGroupHeartbeat. A join (epoch 0) turns an empty classic group into a
    /// consumer group; a classic group with members gets GROUP_ID_NOT_FOUND, as from Kafka
    /// without online migration; other epochs on a group that is not a consumer group get
    /// UNKNOWN_MEMBER_ID, so a member that outlived a coordinator restart rejoins.
    pub fn consumer_heartbeat(
        &mut self,
        request: HeartbeatRequest,
        topics: &Topics,
        settings: &Settings,
        now: Instant,
    ) -> Result<HeartbeatResponse, HeartbeatError> {
        if self.state == GroupState::Dead {
            return Err(HeartbeatError::new(
                E::CoordinatorNotAvailable,
                "The group was deleted or its coordinator moved.",
            ));
        }
        if self.consumer.is_none() {
            if request.member_epoch != 0 {
                return Err(HeartbeatError::new(
                    E::UnknownMemberId,
                    format!(
                        "Member {} is not a member of group {}.",
                        request.member_id, self.group_id
                    ),
                ));
            }
            if self.has_members() {
                return Err(HeartbeatError::new(
                    E::GroupIdNotFound,
                    format!("Group {} is not a consumer group.", self.group_id),
                ));
            }
            info!(self.log, "group uses the consumer protocol"; "offsets" => self.offsets.len());
            self.consumer = Some(ConsumerGroup::new(&self.log));
            self.protocol = None;
            self.leader = None;
        }
        self.consumer
            .as_mut()
            .expect("set above")
            .heartbeat(request, topics, settings, now)
    }

    /// Before a classic JoinGroup: an empty consumer group becomes a classic group; one with
    /// members refuses the join with INCONSISTENT_GROUP_PROTOCOL.
    pub(super) fn classic_join_allowed(&mut self) -> Result<(), i16> {
        match &self.consumer {
            None => Ok(()),
            Some(c) if !c.members.is_empty() => Err(E::InconsistentGroupProtocol.code()),
            Some(_) => {
                info!(self.log, "group uses the classic protocol"; "offsets" => self.offsets.len());
                self.consumer = None;
                Ok(())
            }
        }
    }

    /// Whether an OffsetCommit of `api_version` may write offsets: Kafka's
    /// `validateOffsetCommit` of the group's type.
    pub fn check_offset_commit(
        &self,
        member_id: &str,
        group_instance_id: Option<&str>,
        generation_or_member_epoch: i32,
        api_version: i16,
    ) -> Result<(), i16> {
        match &self.consumer {
            Some(c) if self.state != GroupState::Dead => {
                c.check_commit(member_id, generation_or_member_epoch, Some(api_version))
            }
            // Classic groups check the generation alike in every version.
            _ => self.check_commit(member_id, group_instance_id, generation_or_member_epoch),
        }
    }

    /// Whether an OffsetFetch (v9+ names the member) may read this group's offsets: a consumer
    /// group checks the member and its epoch; a classic group does not.
    pub fn check_offset_fetch(
        &self,
        member_id: Option<&str>,
        member_epoch: i32,
    ) -> Result<(), i16> {
        match &self.consumer {
            Some(c) => c.check_fetch(member_id, member_epoch),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;
    use std::time::Duration;

    use bytes::Bytes;
    use tokio::sync::oneshot::Receiver;

    use super::super::consumer::Assignor;
    use super::super::membership::JoinRequest;
    use super::*;

    fn settings() -> Settings {
        Settings {
            session_timeout: Duration::from_secs(45),
            assignors: Assignor::ALL.to_vec(),
        }
    }

    fn join_request(member_id: &str) -> JoinRequest {
        JoinRequest {
            member_id: member_id.into(),
            group_instance_id: None,
            client_id: "classic".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout: Duration::from_secs(10),
            rebalance_timeout: Duration::from_secs(10),
            protocol_type: "consumer".into(),
            protocols: vec![("range".into(), Bytes::new())],
            require_known_member_id: false,
            reason: None,
        }
    }

    fn heartbeat(member_id: &str, epoch: i32) -> HeartbeatRequest {
        HeartbeatRequest {
            member_id: member_id.into(),
            member_epoch: epoch,
            rebalance_timeout_ms: 30_000,
            subscribed_topic_names: Some(vec!["t".into()]),
            owned: Some(BTreeMap::new()),
            ..HeartbeatRequest::default()
        }
    }

    fn ready<T>(mut rx: Receiver<T>) -> T {
        rx.try_recv().expect("answered")
    }

    #[test]
    fn a_group_id_has_one_protocol_at_a_time() {
        let log = slog::Logger::root(slog::Discard, slog::o!());
        let topics: Topics = Arc::new(BTreeMap::new());
        let now = Instant::now();
        let mut g = Group::new("g", 0, &log);

        // A consumer-protocol member makes the empty group a consumer group.
        let joined = g
            .consumer_heartbeat(heartbeat("m1", 0), &topics, &settings(), now)
            .expect("joins");
        assert_eq!(g.group_type(), GroupType::Consumer);
        assert_eq!(g.listed_protocol_type(), "consumer");
        assert!(g.has_members() && !g.is_blank());
        // A classic member is refused while it has members.
        let refused = ready(g.join(join_request(""), now, Duration::ZERO));
        assert_eq!(refused.error_code, E::InconsistentGroupProtocol.code());
        // Admin commits need an empty group; members commit at their epoch with v9+.
        assert_eq!(
            g.check_offset_commit("", None, -1, 9),
            Err(E::UnknownMemberId.code())
        );
        let epoch = joined.member_epoch;
        assert_eq!(g.check_offset_commit("m1", None, epoch, 9), Ok(()));
        assert_eq!(
            g.check_offset_commit("m1", None, epoch, 8),
            Err(E::UnsupportedVersion.code())
        );
        assert_eq!(
            g.check_offset_commit("m1", None, epoch - 1, 9),
            Err(E::StaleMemberEpoch.code())
        );
        assert_eq!(g.check_offset_fetch(Some("m1"), epoch), Ok(()));
        assert_eq!(
            g.check_offset_fetch(Some("m2"), epoch),
            Err(E::UnknownMemberId.code())
        );
        assert_eq!(g.check_offset_fetch(None, -1), Ok(()));
        // A classic heartbeat finds no such member.
        assert_eq!(
            g.heartbeat("m1", None, epoch, now),
            E::UnknownMemberId.code()
        );

        // Once empty, a classic member converts it back.
        let mut leave = heartbeat("m1", -1);
        leave.subscribed_topic_names = None;
        g.consumer_heartbeat(leave, &topics, &settings(), now)
            .expect("leaves");
        assert_eq!(g.check_offset_commit("", None, -1, 9), Ok(()));
        let joined = ready(g.join(join_request(""), now, Duration::ZERO));
        assert_eq!(joined.error_code, 0);
        assert_eq!(g.group_type(), GroupType::Classic);

        // Now a consumer-protocol member is refused, and other epochs are unknown members.
        let err = g
            .consumer_heartbeat(heartbeat("m2", 0), &topics, &settings(), now)
            .unwrap_err();
        assert_eq!(err.code, E::GroupIdNotFound.code());
        let err = g
            .consumer_heartbeat(heartbeat("m1", 3), &topics, &settings(), now)
            .unwrap_err();
        assert_eq!(err.code, E::UnknownMemberId.code());
    }
}
