//! The classic group protocol's state machine: JoinGroup, SyncGroup, Heartbeat and LeaveGroup
//! on one group, session expiry, and the rebalance that moves a group through
//! PreparingRebalance → CompletingRebalance → Stable (Kafka's `ClassicGroup` and the classic
//! part of `GroupMetadataManager`). Pure and synchronous: callers hold the group's lock, pass
//! the time, and await the returned receivers after releasing it.

use std::time::{Duration, Instant};

use bytes::Bytes;
use slog::info;
use sluice_protocol::ResponseError as E;
use tokio::sync::oneshot;

use super::heartbeat_hold;
use super::state::{Group, GroupState, JoinOutcome, Member, SyncOutcome, code};

/// Kafka's `group.min.session.timeout.ms` and `group.max.session.timeout.ms` defaults.
pub const MIN_SESSION_TIMEOUT: Duration = Duration::from_millis(6_000);
/// See [`MIN_SESSION_TIMEOUT`].
pub const MAX_SESSION_TIMEOUT: Duration = Duration::from_millis(1_800_000);

/// A decoded JoinGroup, version-independent.
pub struct JoinRequest {
    /// Empty on a first join.
    pub member_id: String,
    /// `group.instance.id`.
    pub group_instance_id: Option<String>,
    /// The client's `client.id`.
    pub client_id: String,
    /// The address the member connects from.
    pub client_host: String,
    /// `session.timeout.ms`.
    pub session_timeout: Duration,
    /// The rebalance timeout (v1+; the session timeout before).
    pub rebalance_timeout: Duration,
    /// `consumer`, ...
    pub protocol_type: String,
    /// Protocols in preference order, with metadata.
    pub protocols: Vec<(String, Bytes)>,
    /// v4+: a first join without a member id gets MEMBER_ID_REQUIRED.
    pub require_known_member_id: bool,
    /// Why the client joins (v8+), for the log.
    pub reason: Option<String>,
}

impl Group {
    /// Handles a JoinGroup; the answer arrives on the receiver when the rebalance completes
    /// (at once for errors).
    pub fn join(
        &mut self,
        request: JoinRequest,
        now: Instant,
        initial_delay: Duration,
    ) -> oneshot::Receiver<JoinOutcome> {
        let (tx, rx) = oneshot::channel();
        let reply = |tx: oneshot::Sender<JoinOutcome>, c: E, id: &str| {
            let _ = tx.send(JoinOutcome::error(code(c), id));
        };
        if self.state == GroupState::Dead {
            reply(tx, E::CoordinatorNotAvailable, &request.member_id);
            return rx;
        }
        if let Err(c) = self.classic_join_allowed() {
            let _ = tx.send(JoinOutcome::error(c, &request.member_id));
            return rx;
        }
        if request.session_timeout < MIN_SESSION_TIMEOUT
            || request.session_timeout > MAX_SESSION_TIMEOUT
        {
            reply(tx, E::InvalidSessionTimeout, &request.member_id);
            return rx;
        }
        if !self.accepts_protocols(&request.protocol_type, &request.protocols) {
            reply(tx, E::InconsistentGroupProtocol, &request.member_id);
            return rx;
        }
        let known_instance = request
            .group_instance_id
            .as_ref()
            .and_then(|i| self.static_members.get(i).cloned());
        let member_id = if request.member_id.is_empty() {
            match (request.group_instance_id.clone(), known_instance) {
                (Some(instance), Some(old)) => {
                    self.replace_static_member(request, instance, old, now, tx);
                    return rx;
                }
                (Some(instance), None) => format!("{instance}-{}", uuid::Uuid::new_v4()),
                (None, _) => {
                    let id = format!("{}-{}", request.client_id, uuid::Uuid::new_v4());
                    if request.require_known_member_id {
                        // KIP-394: hand out the id first, so a client that times out and
                        // retries does not leave a phantom member behind.
                        self.pending
                            .insert(id.clone(), now + request.session_timeout);
                        reply(tx, E::MemberIdRequired, &id);
                        return rx;
                    }
                    id
                }
            }
        } else {
            if let Some(instance) = &request.group_instance_id {
                match &known_instance {
                    Some(current) if *current != request.member_id => {
                        info!(self.log, "static member fenced"; "group_instance_id" => instance,
                            "member_id" => &request.member_id, "current_member_id" => current);
                        reply(tx, E::FencedInstanceId, &request.member_id);
                        return rx;
                    }
                    _ => {}
                }
            }
            let pending = self.pending.remove(&request.member_id).is_some();
            if !pending && !self.members.contains_key(&request.member_id) {
                reply(tx, E::UnknownMemberId, &request.member_id);
                return rx;
            }
            request.member_id.clone()
        };
        let is_new = !self.members.contains_key(&member_id);
        if let Some(tx) = self.rejoin_without_change(&member_id, &request, now, tx) {
            self.upsert_member(&member_id, &request, now, tx);
        } else {
            return rx;
        }
        match self.state {
            GroupState::Empty | GroupState::Stable | GroupState::CompletingRebalance => {
                let reason = if is_new {
                    "member joined"
                } else {
                    "member rejoined"
                };
                self.prepare_rebalance(now, initial_delay, reason);
            }
            GroupState::PreparingRebalance => {
                // Kafka's InitialDelayedJoin: each newcomer extends the wait, up to the
                // rebalance timeout.
                if is_new
                    && self.initial_delay_until.is_some()
                    && let Some(deadline) = self.rebalance_deadline
                {
                    self.initial_delay_until = Some((now + initial_delay).min(deadline));
                }
            }
            GroupState::Dead => {}
        }
        if let Some(reason) = &request.reason {
            slog::debug!(self.log, "join reason"; "member_id" => &member_id, "reason" => reason);
        }
        self.maybe_complete_join(now);
        rx
    }

    /// Kafka's shortcut for a known member that rejoins with unchanged protocols: in
    /// CompletingRebalance it gets the current join result again, in Stable (unless it is the
    /// leader, whose rejoin means it wants a new assignment) the current generation, without a
    /// rebalance. Gives the sender back when a rebalance is needed after all.
    fn rejoin_without_change(
        &mut self,
        member_id: &str,
        request: &JoinRequest,
        now: Instant,
        tx: oneshot::Sender<JoinOutcome>,
    ) -> Option<oneshot::Sender<JoinOutcome>> {
        let is_leader = self.leader.as_deref() == Some(member_id);
        let Some(member) = self.members.get_mut(member_id) else {
            return Some(tx);
        };
        let unchanged = member.protocols == request.protocols;
        let shortcut = match self.state {
            GroupState::CompletingRebalance => unchanged,
            GroupState::Stable => unchanged && !is_leader,
            _ => false,
        };
        if !shortcut {
            return Some(tx);
        }
        member.heartbeat_deadline = now + member.session_timeout;
        let protocol = self.protocol.clone().unwrap_or_default();
        let members = if is_leader {
            self.member_list(&protocol)
        } else {
            Vec::new()
        };
        let _ = tx.send(JoinOutcome {
            error_code: 0,
            generation_id: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol.clone(),
            leader: self.leader.clone().unwrap_or_default(),
            member_id: member_id.to_string(),
            members,
            skip_assignment: false,
        });
        None
    }

    pub(super) fn upsert_member(
        &mut self,
        member_id: &str,
        request: &JoinRequest,
        now: Instant,
        tx: oneshot::Sender<JoinOutcome>,
    ) {
        let member = self
            .members
            .entry(member_id.to_string())
            .or_insert_with(|| Member {
                member_id: member_id.to_string(),
                group_instance_id: request.group_instance_id.clone(),
                client_id: request.client_id.clone(),
                client_host: request.client_host.clone(),
                session_timeout: request.session_timeout,
                rebalance_timeout: request.rebalance_timeout,
                protocol_type: request.protocol_type.clone(),
                protocols: Vec::new(),
                assignment: Bytes::new(),
                join_waiter: None,
                sync_waiter: None,
                heartbeat_deadline: now,
                held_heartbeat: None,
            });
        member.session_timeout = request.session_timeout;
        member.client_host.clone_from(&request.client_host);
        member.rebalance_timeout = request.rebalance_timeout;
        member.protocols = request.protocols.clone();
        member.heartbeat_deadline = now + request.session_timeout;
        if let Some(old) = member.join_waiter.replace(tx) {
            let _ = old.send(JoinOutcome::error(code(E::UnknownMemberId), member_id));
        }
        if let Some(instance) = &request.group_instance_id {
            self.static_members
                .insert(instance.clone(), member_id.to_string());
        }
        if self.protocol_type.is_none() || self.members.len() == 1 {
            self.protocol_type = Some(request.protocol_type.clone());
        }
    }

    pub(super) fn member_list(&self, protocol: &str) -> Vec<(String, Option<String>, Bytes)> {
        self.members
            .values()
            .map(|m| {
                (
                    m.member_id.clone(),
                    m.group_instance_id.clone(),
                    m.metadata(protocol),
                )
            })
            .collect()
    }

    /// Marks the group Dead (its coordinator moved away) and answers waiting joins and syncs
    /// with `error_code`, so their clients look the coordinator up again.
    pub fn shut_down(&mut self, error_code: i16) {
        self.state = GroupState::Dead;
        self.release_heartbeats(error_code, None);
        for m in self.members.values_mut() {
            if let Some(w) = m.join_waiter.take() {
                let _ = w.send(JoinOutcome::error(error_code, &m.member_id));
            }
            if let Some(w) = m.sync_waiter.take() {
                let _ = w.send(SyncOutcome::error(error_code));
            }
        }
    }

    /// Removes a member (and its static identity), answering anything it waits for.
    pub fn remove_member(&mut self, member_id: &str) -> bool {
        let Some(mut m) = self.members.shift_remove(member_id) else {
            return false;
        };
        if let Some(instance) = &m.group_instance_id
            && self.static_members.get(instance).map(String::as_str) == Some(member_id)
        {
            self.static_members.remove(instance);
        }
        if let Some(w) = m.join_waiter.take() {
            let _ = w.send(JoinOutcome::error(code(E::UnknownMemberId), member_id));
        }
        if let Some(w) = m.sync_waiter.take() {
            let _ = w.send(SyncOutcome::error(code(E::UnknownMemberId)));
        }
        if let Some(held) = m.held_heartbeat.take() {
            heartbeat_hold::removed(held);
        }
        self.assignments_due.remove(member_id);
        true
    }

    /// Checks member id, static identity and generation; `Err` carries the error code.
    fn check_member(
        &self,
        member_id: &str,
        group_instance_id: Option<&str>,
        generation: Option<i32>,
    ) -> Result<(), i16> {
        if self.state == GroupState::Dead {
            return Err(code(E::CoordinatorNotAvailable));
        }
        if let Some(instance) = group_instance_id {
            match self.static_members.get(instance) {
                Some(current) if current != member_id => return Err(code(E::FencedInstanceId)),
                _ => {}
            }
        }
        if !self.members.contains_key(member_id) {
            return Err(code(E::UnknownMemberId));
        }
        if generation.is_some_and(|g| g != self.generation) {
            return Err(code(E::IllegalGeneration));
        }
        Ok(())
    }

    /// Whether an OffsetCommit may write offsets for this group (Kafka's
    /// `ClassicGroup.validateOffsetCommit`): a member's commit must carry its current
    /// generation; a commit without member and generation (admin tools, `assign()` users) is
    /// only accepted while the group has no members. A consumer group checks the member epoch
    /// instead (as for a TxnOffsetCommit; OffsetCommit uses `check_offset_commit`).
    pub fn check_commit(
        &self,
        member_id: &str,
        group_instance_id: Option<&str>,
        generation: i32,
    ) -> Result<(), i16> {
        if self.state == GroupState::Dead {
            return Err(code(E::CoordinatorNotAvailable));
        }
        if let Some(consumer) = &self.consumer {
            return consumer.check_commit(member_id, generation, None);
        }
        if generation < 0 && member_id.is_empty() && group_instance_id.is_none() {
            return match self.state {
                GroupState::Empty => Ok(()),
                _ => Err(code(E::UnknownMemberId)),
            };
        }
        self.check_member(member_id, group_instance_id, Some(generation))?;
        if self.state == GroupState::CompletingRebalance {
            return Err(code(E::RebalanceInProgress));
        }
        Ok(())
    }

    /// Handles a SyncGroup; the followers' answers wait for the leader's assignment. The flag
    /// is true when this call completed the rebalance (the group metadata should be stored).
    #[allow(clippy::too_many_arguments)]
    pub fn sync(
        &mut self,
        member_id: &str,
        group_instance_id: Option<&str>,
        generation: i32,
        protocol_type: Option<&str>,
        protocol_name: Option<&str>,
        assignments: Vec<(String, Bytes)>,
        now: Instant,
    ) -> (oneshot::Receiver<SyncOutcome>, bool) {
        let (tx, rx) = oneshot::channel();
        if let Err(c) = self.check_member(member_id, group_instance_id, Some(generation)) {
            let _ = tx.send(SyncOutcome::error(c));
            return (rx, false);
        }
        if protocol_type.is_some_and(|t| Some(t) != self.protocol_type.as_deref())
            || protocol_name.is_some_and(|p| Some(p) != self.protocol.as_deref())
        {
            let _ = tx.send(SyncOutcome::error(code(E::InconsistentGroupProtocol)));
            return (rx, false);
        }
        let ok = |assignment: Bytes| SyncOutcome {
            error_code: 0,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol.clone(),
            assignment,
        };
        match self.state {
            GroupState::PreparingRebalance => {
                // A member that revokes partitions collects the assignment of the round that
                // just completed, even though the next one started (see `cooperative.rs`).
                let answer = if self.assignments_due.remove(member_id) {
                    ok(self.members[member_id].assignment.clone())
                } else {
                    SyncOutcome::error(code(E::RebalanceInProgress))
                };
                let _ = tx.send(answer);
                (rx, false)
            }
            GroupState::Stable => {
                let member = &self.members[member_id];
                let _ = tx.send(ok(member.assignment.clone()));
                (rx, false)
            }
            GroupState::CompletingRebalance => {
                let member = self.members.get_mut(member_id).expect("checked");
                member.heartbeat_deadline = now + member.session_timeout;
                member.sync_waiter = Some(tx);
                if self.leader.as_deref() != Some(member_id) {
                    return (rx, false);
                }
                // Members giving up partitions make a next round certain: only they get their
                // assignment now, the others learn of the next round from their SyncGroup.
                let revoking = self.revoking_members(&assignments);
                let mut answers = Vec::new();
                let mut due = Vec::new();
                for m in self.members.values_mut() {
                    m.assignment = assignments
                        .iter()
                        .find(|(id, _)| *id == m.member_id)
                        .map(|(_, a)| a.clone())
                        .unwrap_or_default();
                    let revokes = revoking.as_ref().map(|r| r.contains(&m.member_id));
                    match (m.sync_waiter.take(), revokes) {
                        (Some(w), None | Some(true)) => answers.push((w, m.assignment.clone())),
                        (Some(w), Some(false)) => m.sync_waiter = Some(w),
                        (None, Some(true)) => due.push(m.member_id.clone()),
                        (None, _) => {}
                    }
                }
                for (w, a) in answers {
                    let _ = w.send(ok(a));
                }
                match revoking {
                    Some(revoking) => self.continue_rebalance(revoking.len(), due, now),
                    None => {
                        self.state = GroupState::Stable;
                        info!(self.log, "group stable"; "generation" => self.generation,
                            "members" => self.members.len());
                    }
                }
                (rx, true)
            }
            GroupState::Empty | GroupState::Dead => {
                let _ = tx.send(SyncOutcome::error(code(E::UnknownMemberId)));
                (rx, false)
            }
        }
    }

    /// Handles a Heartbeat: refreshes the member's session and tells it about a rebalance.
    pub fn heartbeat(
        &mut self,
        member_id: &str,
        group_instance_id: Option<&str>,
        generation: i32,
        now: Instant,
    ) -> i16 {
        let rebalancing = self.state == GroupState::PreparingRebalance;
        let generation = (!rebalancing).then_some(generation);
        if let Err(c) = self.check_member(member_id, group_instance_id, generation) {
            return c;
        }
        if self.state == GroupState::Empty {
            return code(E::UnknownMemberId);
        }
        let member = self.members.get_mut(member_id).expect("checked");
        member.heartbeat_deadline = now + member.session_timeout;
        if rebalancing {
            code(E::RebalanceInProgress)
        } else {
            0
        }
    }

    /// Handles one member of a LeaveGroup; the group rebalances without it.
    pub fn leave(
        &mut self,
        member_id: &str,
        group_instance_id: Option<&str>,
        reason: Option<&str>,
        now: Instant,
    ) -> i16 {
        let member_id = match group_instance_id {
            Some(instance) => match self.static_members.get(instance) {
                Some(current) if !member_id.is_empty() && current != member_id => {
                    return code(E::FencedInstanceId);
                }
                Some(current) => current.clone(),
                None => return code(E::UnknownMemberId),
            },
            None => member_id.to_string(),
        };
        if self.pending.remove(&member_id).is_some() {
            self.maybe_complete_join(now);
            return 0;
        }
        // A held Heartbeat came before the LeaveGroup, when the member was fine: NONE, as Kafka
        // would have answered it (the member closing must not reset its state over it).
        if let Some(held) = self
            .members
            .get_mut(&member_id)
            .and_then(|m| m.held_heartbeat.take())
        {
            held.answer(0);
        }
        if !self.remove_member(&member_id) {
            return code(E::UnknownMemberId);
        }
        info!(self.log, "member left"; "member_id" => &member_id,
            "reason" => reason.unwrap_or(""), "members" => self.members.len());
        self.after_removal(now, "member left");
        0
    }
}
