//! Static membership (KIP-345): a member with `group.instance.id` that restarts takes over
//! its old identity and assignment under a new member id, without a rebalance while the group
//! is Stable; the old member id is fenced (FENCED_INSTANCE_ID).

use std::time::{Duration, Instant};

use slog::info;
use sluice_protocol::ResponseError as E;
use tokio::sync::oneshot;

use super::membership::JoinRequest;
use super::state::{Group, GroupState, JoinOutcome, SyncOutcome, code};

impl Group {
    /// A static member rejoining with an empty member id: it takes over its old identity and
    /// assignment under a new member id; a Stable group does not rebalance (KIP-345).
    pub(super) fn replace_static_member(
        &mut self,
        request: JoinRequest,
        instance: String,
        old_id: String,
        now: Instant,
        tx: oneshot::Sender<JoinOutcome>,
    ) {
        let new_id = format!("{instance}-{}", uuid::Uuid::new_v4());
        let Some(mut member) = self.members.shift_remove(&old_id) else {
            self.static_members.remove(&instance);
            let _ = tx.send(JoinOutcome::error(code(E::UnknownMemberId), ""));
            return;
        };
        if let Some(w) = member.join_waiter.take() {
            let _ = w.send(JoinOutcome::error(code(E::FencedInstanceId), &old_id));
        }
        if let Some(w) = member.sync_waiter.take() {
            let _ = w.send(SyncOutcome::error(code(E::FencedInstanceId)));
        }
        if let Some(held) = member.held_heartbeat.take() {
            held.answer(code(E::FencedInstanceId));
        }
        self.assignments_due.remove(&old_id);
        let protocols_changed = member.protocols != request.protocols;
        member.member_id = new_id.clone();
        self.members.insert(new_id.clone(), member);
        if self.leader.as_deref() == Some(old_id.as_str()) {
            self.leader = Some(new_id.clone());
        }
        info!(self.log, "static member rejoined"; "group_instance_id" => &instance,
            "old_member_id" => &old_id, "member_id" => &new_id, "state" => self.state.name());
        if self.state == GroupState::Stable && !protocols_changed {
            self.static_members.insert(instance, new_id.clone());
            let member = self.members.get_mut(&new_id).expect("just inserted");
            member.heartbeat_deadline = now + request.session_timeout;
            let is_leader = self.leader.as_deref() == Some(new_id.as_str());
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
                member_id: new_id,
                members,
                skip_assignment: is_leader,
            });
            return;
        }
        self.upsert_member(&new_id, &request, now, tx);
        if self.state != GroupState::PreparingRebalance {
            self.prepare_rebalance(now, Duration::ZERO, "static member rejoined with changes");
        }
        self.maybe_complete_join(now);
    }
}
