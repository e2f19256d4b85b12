//! ConsumerGroupHeartbeat on one consumer group (the consumer part of Kafka's
//! `GroupMetadataManager`): validation, joining (epoch 0), leaving (-1, or -2 for a static
//! member that will come back), epoch fencing, and the three steps of a regular heartbeat —
//! update the member (bumping the group epoch if its subscription changed), recompute the target
//! assignment if the group epoch moved past it, and reconcile the member one step towards it.
//! Pure and synchronous: the caller holds the group's lock and passes the time.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use slog::info;
use sluice_protocol::ResponseError as E;

use super::assignor::Assignor;
use super::group::{ConsumerGroup, Topics};
use super::member::{Assignment, ConsumerMember, CurrentAssignment, MemberState, compile_regex};
use super::reconcile;

/// Member epoch of a dynamic member leaving the group.
pub const LEAVE_GROUP_MEMBER_EPOCH: i32 = -1;
/// Member epoch of a static member leaving for now; it keeps its partitions for a session.
pub const LEAVE_GROUP_STATIC_MEMBER_EPOCH: i32 = -2;

/// A decoded ConsumerGroupHeartbeat; `None` fields did not change since the last heartbeat.
#[derive(Debug, Clone, Default)]
pub struct HeartbeatRequest {
    /// The member id (empty on a first join from clients before KIP-1082).
    pub member_id: String,
    /// 0 to join, -1 to leave, -2 for a static member's temporary leave, else the current epoch.
    pub member_epoch: i32,
    /// `group.instance.id`.
    pub instance_id: Option<String>,
    /// `client.rack`.
    pub rack_id: Option<String>,
    /// The rebalance timeout, -1 if unchanged.
    pub rebalance_timeout_ms: i32,
    /// Subscribed topic names.
    pub subscribed_topic_names: Option<Vec<String>>,
    /// Subscribed topic regex (v1+).
    pub subscribed_topic_regex: Option<String>,
    /// The server-side assignor asked for.
    pub server_assignor: Option<String>,
    /// The partitions the member owns.
    pub owned: Option<Assignment>,
    /// The client's `client.id`.
    pub client_id: String,
    /// The client's address.
    pub client_host: String,
}

/// A successful answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatResponse {
    /// The member id.
    pub member_id: String,
    /// The member's epoch after this heartbeat.
    pub member_epoch: i32,
    /// The partitions the member may own now, when it changed or the request was a full one.
    pub assignment: Option<Assignment>,
}

/// A failed heartbeat: Kafka error code and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatError {
    /// The error code.
    pub code: i16,
    /// The message for the client's log.
    pub message: String,
}

impl HeartbeatError {
    /// An error with its message.
    pub fn new(error: E, message: impl Into<String>) -> HeartbeatError {
        HeartbeatError {
            code: error.code(),
            message: message.into(),
        }
    }
}

/// The coordinator's settings for consumer groups.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `group.consumer.session.timeout.ms`.
    pub session_timeout: Duration,
    /// `group.consumer.assignors`: the assignors members may name; the first is the default.
    pub assignors: Vec<Assignor>,
}

impl Settings {
    /// The assignor of a group whose members name none.
    pub fn default_assignor(&self) -> Assignor {
        self.assignors.first().copied().unwrap_or(Assignor::Uniform)
    }
}

fn invalid(message: &str) -> HeartbeatError {
    HeartbeatError::new(E::InvalidRequest, message)
}

fn blank(value: &Option<String>) -> bool {
    value.as_ref().is_some_and(|v| v.trim().is_empty())
}

/// Kafka's `throwIfConsumerGroupHeartbeatRequestIsInvalid`, before the group is looked up.
pub fn validate(
    group_id: &str,
    request: &HeartbeatRequest,
    settings: &Settings,
) -> Result<(), HeartbeatError> {
    if group_id.trim().is_empty() {
        return Err(invalid("GroupId can't be empty."));
    }
    if blank(&request.instance_id) {
        return Err(invalid("InstanceId can't be empty."));
    }
    if blank(&request.rack_id) {
        return Err(invalid("RackId can't be empty."));
    }
    match request.member_epoch {
        e if e > 0 || e == LEAVE_GROUP_MEMBER_EPOCH => {
            if request.member_id.trim().is_empty() {
                return Err(invalid("MemberId can't be empty."));
            }
        }
        0 => {
            if request.rebalance_timeout_ms == -1 {
                return Err(invalid(
                    "RebalanceTimeoutMs must be provided in first request.",
                ));
            }
            if request
                .owned
                .as_ref()
                .is_none_or(|o| o.values().any(|p| !p.is_empty()))
            {
                return Err(invalid("TopicPartitions must be empty when (re-)joining."));
            }
            if request.subscribed_topic_names.is_none() && request.subscribed_topic_regex.is_none()
            {
                return Err(invalid(
                    "Either SubscribedTopicNames or SubscribedTopicRegex must be non-null when (re-)joining.",
                ));
            }
        }
        LEAVE_GROUP_STATIC_MEMBER_EPOCH => {
            if request.member_id.trim().is_empty() {
                return Err(invalid("MemberId can't be empty."));
            }
            if request.instance_id.is_none() {
                return Err(invalid("InstanceId can't be null."));
            }
        }
        _ => return Err(invalid("MemberEpoch is invalid.")),
    }
    if let Some(name) = &request.server_assignor
        && !settings.assignors.iter().any(|a| a.name() == name.as_str())
    {
        let names: Vec<&str> = settings.assignors.iter().map(|a| a.name()).collect();
        return Err(HeartbeatError::new(
            E::UnsupportedAssignor,
            format!(
                "ServerAssignor {name} is not supported. Supported assignors: {}.",
                names.join(", ")
            ),
        ));
    }
    if let Some(regex) = &request.subscribed_topic_regex
        && !regex.is_empty()
        && let Err(e) = compile_regex(regex)
    {
        return Err(HeartbeatError::new(
            E::InvalidRegularExpression,
            format!("SubscribedTopicRegex `{regex}` is not a valid regular expression: {e}"),
        ));
    }
    Ok(())
}

impl ConsumerGroup {
    /// Handles one validated heartbeat.
    pub fn heartbeat(
        &mut self,
        request: HeartbeatRequest,
        topics: &Topics,
        settings: &Settings,
        now: Instant,
    ) -> Result<HeartbeatResponse, HeartbeatError> {
        match request.member_epoch {
            LEAVE_GROUP_MEMBER_EPOCH | LEAVE_GROUP_STATIC_MEMBER_EPOCH => {
                return self.leave(&request);
            }
            _ => {}
        }
        let joining = request.member_epoch == 0;
        let member_id = if request.member_id.is_empty() {
            uuid::Uuid::new_v4().to_string()
        } else {
            request.member_id.clone()
        };
        let mut is_new = false;
        if joining {
            is_new = self.admit(&member_id, &request, now)?;
        } else {
            let member = match &request.instance_id {
                Some(instance) => self.static_member(instance, &member_id)?,
                None => self.members.get(&member_id).ok_or_else(|| {
                    HeartbeatError::new(
                        E::UnknownMemberId,
                        format!("Member {member_id} is not a member of the group."),
                    )
                })?,
            };
            check_epoch(member, request.member_epoch, request.owned.as_ref())?;
        }

        // 1. Update the member; a changed subscription bumps the group epoch.
        let member = self
            .members
            .get_mut(&member_id)
            .expect("admitted or checked");
        let before = (
            member.subscribed_topic_names.clone(),
            member.subscribed_topic_regex.clone(),
        );
        update(member, &request);
        let subscription_changed = is_new
            || before
                != (
                    member.subscribed_topic_names.clone(),
                    member.subscribed_topic_regex.clone(),
                );
        let mut bump = subscription_changed;
        if (subscription_changed || self.topics_changed(topics)) && self.refresh_subscribed(topics)
        {
            bump = true;
        }
        if bump {
            self.group_epoch += 1;
            info!(self.log, "bumped group epoch"; "group_epoch" => self.group_epoch,
                "member_id" => &member_id, "members" => self.members.len());
        }

        // 2. A new target assignment when the group epoch moved past it.
        if self.group_epoch > self.assignment_epoch {
            self.compute_target(settings.default_assignor());
        }

        // 3. One reconciliation step towards the member's target.
        let member = &self.members[&member_id];
        let assigned_before = member.current.assigned.clone();
        if !member.current.is_reconciled_to(self.assignment_epoch) {
            let empty = Assignment::new();
            let target = self.target.get(&member_id).unwrap_or(&empty);
            let epochs = |t: &uuid::Uuid, p: i32| self.partition_epoch(t, p);
            let next = reconcile::next(
                &member.current,
                self.assignment_epoch,
                target,
                request.owned.as_ref(),
                &epochs,
            );
            if next != member.current {
                slog::debug!(self.log, "member reconciled"; "member_id" => &member_id,
                    "member_epoch" => next.member_epoch, "state" => next.state.name());
                self.set_current(&member_id, next, now);
            }
        }
        let member = self.members.get_mut(&member_id).expect("present");
        member.session_deadline = now + settings.session_timeout;

        // The assignment goes back on a full request (joins, and clients resending everything
        // after an error) or when it changed.
        let full = joining
            || (request.rebalance_timeout_ms != -1
                && request.subscribed_topic_names.is_some()
                && request.owned.is_some());
        let changed = member.current.assigned != assigned_before;
        Ok(HeartbeatResponse {
            member_id,
            member_epoch: member.member_epoch(),
            assignment: (full || changed).then(|| member.current.assigned.clone()),
        })
    }

    /// A member joins with epoch 0: a new member, a static member taking over from its previous
    /// incarnation, or a known member rejoining after it was fenced. Returns whether the member
    /// is new to the group.
    fn admit(
        &mut self,
        member_id: &str,
        request: &HeartbeatRequest,
        now: Instant,
    ) -> Result<bool, HeartbeatError> {
        if let Some(instance) = &request.instance_id
            && let Some(old_id) = self.static_members.get(instance).cloned()
            && old_id != member_id
        {
            let old = &self.members[&old_id];
            if old.member_epoch() != LEAVE_GROUP_STATIC_MEMBER_EPOCH {
                return Err(HeartbeatError::new(
                    E::UnreleasedInstanceId,
                    format!(
                        "Static member {member_id} with instance id {instance} cannot join the group because the instance id is owned by {old_id} member."
                    ),
                ));
            }
            // KIP-848: the new incarnation takes over the assignment and target without a new
            // group epoch, at epoch 0, and reconciles back to the target epoch at once.
            let mut member = self.take_member(&old_id).expect("indexed");
            let target = self.target.remove(&old_id);
            member.member_id = member_id.to_string();
            member.previous_member_epoch = 0;
            member.current.member_epoch = 0;
            member.current.state = MemberState::Stable;
            member.revocation_deadline = None;
            member.session_deadline = now;
            self.put_member(member, now);
            if let Some(target) = target {
                self.target.insert(member_id.to_string(), target);
            }
            info!(self.log, "static member rejoined"; "group_instance_id" => instance,
                "old_member_id" => &old_id, "member_id" => member_id);
            return Ok(false);
        }
        if self.members.contains_key(member_id) {
            // The member lost its partitions (it was fenced, or lost the answer to its join)
            // and starts over: its previous incarnation leaves first. Kafka answers such a join
            // with FENCED_MEMBER_EPOCH until the session of the old incarnation expires; a join
            // owns nothing (validated), so letting it in at once is safe.
            self.fence(member_id, "member rejoined with epoch 0");
        }
        let mut member = ConsumerMember::new(member_id.to_string(), now);
        member.instance_id.clone_from(&request.instance_id);
        self.put_member(member, now);
        info!(self.log, "member joined"; "member_id" => member_id,
            "group_instance_id" => request.instance_id.as_deref().unwrap_or(""),
            "client_id" => &request.client_id);
        Ok(true)
    }

    /// The static member of `instance`, which must be `member_id`.
    fn static_member(
        &self,
        instance: &str,
        member_id: &str,
    ) -> Result<&ConsumerMember, HeartbeatError> {
        let current = self.static_members.get(instance).ok_or_else(|| {
            HeartbeatError::new(
                E::UnknownMemberId,
                format!("Instance id {instance} is unknown."),
            )
        })?;
        if current != member_id {
            return Err(HeartbeatError::new(
                E::FencedInstanceId,
                format!(
                    "Static member {member_id} with instance id {instance} was fenced by member {current}."
                ),
            ));
        }
        Ok(&self.members[current])
    }

    /// Epoch -1 (leave) or -2 (a static member leaves for now, keeping its partitions until its
    /// session expires).
    fn leave(&mut self, request: &HeartbeatRequest) -> Result<HeartbeatResponse, HeartbeatError> {
        let member_id = match &request.instance_id {
            Some(instance) => self
                .static_member(instance, &request.member_id)?
                .member_id
                .clone(),
            None => {
                if !self.members.contains_key(&request.member_id) {
                    return Err(HeartbeatError::new(
                        E::UnknownMemberId,
                        format!("Member {} is not a member of the group.", request.member_id),
                    ));
                }
                request.member_id.clone()
            }
        };
        if request.member_epoch == LEAVE_GROUP_STATIC_MEMBER_EPOCH {
            let member = &self.members[&member_id];
            let next = CurrentAssignment {
                state: MemberState::Stable,
                member_epoch: LEAVE_GROUP_STATIC_MEMBER_EPOCH,
                assigned: member.current.assigned.clone(),
                pending_revocation: Assignment::new(),
            };
            self.set_current(&member_id, next, Instant::now());
            info!(self.log, "static member left for now"; "member_id" => &member_id,
                "group_instance_id" => request.instance_id.as_deref().unwrap_or(""));
        } else {
            self.fence(&member_id, "member left");
        }
        Ok(HeartbeatResponse {
            member_id,
            member_epoch: request.member_epoch,
            assignment: None,
        })
    }
}

/// Kafka's `throwIfConsumerGroupMemberEpochIsInvalid`: a member ahead of the coordinator, or
/// behind it other than by one epoch whose answer it may have missed, must rejoin.
fn check_epoch(
    member: &ConsumerMember,
    received: i32,
    owned: Option<&Assignment>,
) -> Result<(), HeartbeatError> {
    let current = member.member_epoch();
    let lost_answer = received == member.previous_member_epoch
        && owned.is_some_and(|o| super::member::is_subset(o, &member.current.assigned));
    if received > current || (received < current && !lost_answer) {
        return Err(HeartbeatError::new(
            E::FencedMemberEpoch,
            format!(
                "The consumer group member has a member epoch ({received}) other than the one known by the group coordinator ({current}). The member must abandon all its partitions and rejoin."
            ),
        ));
    }
    Ok(())
}

/// Applies the fields a heartbeat changed.
fn update(member: &mut ConsumerMember, request: &HeartbeatRequest) {
    if let Some(instance) = &request.instance_id {
        member.instance_id = Some(instance.clone());
    }
    if let Some(rack) = &request.rack_id {
        member.rack_id = Some(rack.clone());
    }
    if request.rebalance_timeout_ms >= 0 {
        member.rebalance_timeout = Duration::from_millis(request.rebalance_timeout_ms as u64);
    }
    if let Some(assignor) = &request.server_assignor {
        member.server_assignor = Some(assignor.clone());
    }
    if let Some(names) = &request.subscribed_topic_names {
        member.subscribed_topic_names = names.iter().cloned().collect::<BTreeSet<_>>();
    }
    if let Some(regex) = &request.subscribed_topic_regex {
        if regex.is_empty() {
            member.subscribed_topic_regex = None;
            member.regex = None;
        } else if member.subscribed_topic_regex.as_ref() != Some(regex) {
            member.regex = compile_regex(regex).ok();
            member.subscribed_topic_regex = Some(regex.clone());
        }
    }
    member.client_id.clone_from(&request.client_id);
    member.client_host.clone_from(&request.client_host);
}
