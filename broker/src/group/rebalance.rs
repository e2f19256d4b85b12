//! Rebalances of a classic group: PreparingRebalance (members rejoin, the first rebalance of
//! an empty group waits `group.initial.rebalance.delay.ms` for more), the completed join that
//! bumps the generation, selects the protocol and elects the leader (CompletingRebalance), and
//! the periodic expiry of silent members that starts the next one.

use std::time::{Duration, Instant};

use bytes::Bytes;
use slog::info;
use sluice_protocol::ResponseError as E;

use super::state::{Group, GroupState, JoinOutcome, SyncOutcome, code};

impl Group {
    /// Starts a rebalance: members must rejoin (they learn it from Heartbeat, held ones at
    /// once) before the rebalance timeout.
    pub fn prepare_rebalance(&mut self, now: Instant, initial_delay: Duration, reason: &str) {
        self.release_heartbeats(code(E::RebalanceInProgress), Some(now));
        if self.state == GroupState::CompletingRebalance {
            for m in self.members.values_mut() {
                if let Some(w) = m.sync_waiter.take() {
                    let _ = w.send(SyncOutcome::error(code(E::RebalanceInProgress)));
                }
            }
        }
        let timeout = self.max_rebalance_timeout();
        if self.state == GroupState::Empty {
            let delay = initial_delay.min(timeout);
            self.initial_delay_until = Some(now + delay);
            self.rebalance_deadline = Some(now + timeout.max(delay));
        } else {
            self.initial_delay_until = None;
            self.rebalance_deadline = Some(now + timeout);
        }
        info!(self.log, "preparing rebalance"; "reason" => reason, "from_state" => self.state.name(),
            "generation" => self.generation, "members" => self.members.len(),
            "rebalance_timeout_ms" => timeout.as_millis() as u64);
        self.state = GroupState::PreparingRebalance;
    }

    /// Completes the join phase when every member rejoined (after the initial delay), or the
    /// rebalance timeout passed.
    pub fn maybe_complete_join(&mut self, now: Instant) {
        if self.state != GroupState::PreparingRebalance {
            return;
        }
        let delay_over = self.initial_delay_until.is_none_or(|t| now >= t);
        let timed_out = self.rebalance_deadline.is_some_and(|t| now >= t);
        if (delay_over && self.all_members_joined()) || timed_out {
            self.complete_join(now);
        }
    }

    pub(super) fn complete_join(&mut self, now: Instant) {
        let missing: Vec<String> = self
            .members
            .values()
            .filter(|m| m.join_waiter.is_none())
            .map(|m| m.member_id.clone())
            .collect();
        for id in &missing {
            info!(self.log, "member removed: it did not rejoin before the rebalance timeout";
                "member_id" => id);
            self.remove_member(id);
        }
        self.rebalance_deadline = None;
        self.initial_delay_until = None;
        self.assignments_due.clear();
        self.generation += 1;
        if self.members.is_empty() {
            self.state = GroupState::Empty;
            self.protocol = None;
            self.leader = None;
            info!(self.log, "rebalance completed: group is empty"; "generation" => self.generation);
            return;
        }
        self.protocol = self.select_protocol();
        if self
            .leader
            .as_ref()
            .is_none_or(|l| !self.members.contains_key(l))
        {
            self.leader = self.members.keys().next().cloned();
        }
        self.state = GroupState::CompletingRebalance;
        let protocol = self.protocol.clone().unwrap_or_default();
        let leader = self.leader.clone().unwrap_or_default();
        let all = self.member_list(&protocol);
        for m in self.members.values_mut() {
            m.assignment = Bytes::new();
            m.heartbeat_deadline = now + m.session_timeout;
            let Some(w) = m.join_waiter.take() else {
                continue;
            };
            let _ = w.send(JoinOutcome {
                error_code: 0,
                generation_id: self.generation,
                protocol_type: self.protocol_type.clone(),
                protocol_name: self.protocol.clone(),
                leader: leader.clone(),
                member_id: m.member_id.clone(),
                members: if m.member_id == leader {
                    all.clone()
                } else {
                    Vec::new()
                },
                skip_assignment: false,
            });
        }
        info!(self.log, "rebalance completed"; "generation" => self.generation,
            "protocol" => &protocol, "leader" => &leader, "members" => self.members.len());
    }

    pub(super) fn after_removal(&mut self, now: Instant, reason: &str) {
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.prepare_rebalance(now, Duration::ZERO, reason);
                self.maybe_complete_join(now);
            }
            GroupState::PreparingRebalance => self.maybe_complete_join(now),
            GroupState::Empty | GroupState::Dead => {}
        }
    }

    /// Expires members whose session timed out and handed-out ids never used, and completes a
    /// rebalance whose timeout passed; fences silent consumer-group members. Called periodically.
    pub fn expire(&mut self, now: Instant) {
        if let Some(consumer) = &mut self.consumer {
            consumer.expire(now);
        }
        self.pending.retain(|_, deadline| *deadline > now);
        let expired: Vec<(String, u64)> = self
            .members
            .values()
            .filter(|m| m.join_waiter.is_none() && m.heartbeat_deadline <= now)
            .map(|m| (m.member_id.clone(), m.session_timeout.as_millis() as u64))
            .collect();
        for (id, session_timeout_ms) in &expired {
            info!(self.log, "member session expired"; "member_id" => id,
                "session_timeout_ms" => session_timeout_ms, "state" => self.state.name());
            self.remove_member(id);
        }
        if !expired.is_empty() {
            self.after_removal(now, "member session expired");
        }
        self.maybe_complete_join(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::group::membership::JoinRequest;
    use tokio::sync::oneshot::Receiver;

    const SESSION: Duration = Duration::from_secs(10);
    const REBALANCE: Duration = Duration::from_secs(30);

    fn group() -> Group {
        Group::new("g", 0, &slog::Logger::root(slog::Discard, slog::o!()))
    }

    fn request(member_id: &str, instance: Option<&str>) -> JoinRequest {
        JoinRequest {
            member_id: member_id.into(),
            group_instance_id: instance.map(String::from),
            client_id: "client".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout: SESSION,
            rebalance_timeout: REBALANCE,
            protocol_type: "consumer".into(),
            protocols: vec![("range".into(), Bytes::from_static(b"sub"))],
            require_known_member_id: true,
            reason: None,
        }
    }

    fn ready<T>(mut rx: Receiver<T>) -> T {
        rx.try_recv().expect("answered")
    }

    /// Joins a new dynamic member through MEMBER_ID_REQUIRED; returns its id and pending join.
    fn join_new(g: &mut Group, now: Instant) -> (String, Receiver<JoinOutcome>) {
        let first = ready(g.join(request("", None), now, Duration::ZERO));
        assert_eq!(first.error_code, code(E::MemberIdRequired));
        let id = first.member_id;
        (id.clone(), g.join(request(&id, None), now, Duration::ZERO))
    }

    fn sync(
        g: &mut Group,
        id: &str,
        assignments: Vec<(String, Bytes)>,
        now: Instant,
    ) -> Receiver<SyncOutcome> {
        let generation = g.generation;
        g.sync(id, None, generation, None, None, assignments, now).0
    }

    #[test]
    fn join_sync_heartbeat_and_a_second_member_rebalance() {
        let now = Instant::now();
        let mut g = group();
        let (a, join_a) = join_new(&mut g, now);
        let joined = ready(join_a);
        assert_eq!((joined.error_code, joined.generation_id), (0, 1));
        assert_eq!(joined.leader, a);
        assert_eq!(joined.members.len(), 1);
        assert_eq!(joined.protocol_name.as_deref(), Some("range"));
        assert_eq!(g.state, GroupState::CompletingRebalance);
        let synced = ready(sync(
            &mut g,
            &a,
            vec![(a.clone(), Bytes::from_static(b"p0-5"))],
            now,
        ));
        assert_eq!(&synced.assignment[..], b"p0-5");
        assert_eq!(g.state, GroupState::Stable);
        assert_eq!(g.heartbeat(&a, None, 1, now), 0);
        assert_eq!(g.heartbeat(&a, None, 0, now), code(E::IllegalGeneration));
        assert_eq!(
            g.heartbeat("nobody", None, 1, now),
            code(E::UnknownMemberId)
        );

        // A second member: the first learns of the rebalance from its heartbeat and rejoins.
        let (b, mut join_b) = join_new(&mut g, now);
        assert!(join_b.try_recv().is_err(), "waits for the first member");
        assert_eq!(g.state, GroupState::PreparingRebalance);
        assert_eq!(g.heartbeat(&a, None, 1, now), code(E::RebalanceInProgress));
        let rejoined = ready(g.join(request(&a, None), now, Duration::ZERO));
        let joined_b = ready(join_b);
        assert_eq!((rejoined.generation_id, joined_b.generation_id), (2, 2));
        assert_eq!(rejoined.members.len(), 2, "the leader sees every member");
        assert!(joined_b.members.is_empty());
        let mut follower = sync(&mut g, &b, Vec::new(), now);
        assert!(
            follower.try_recv().is_err(),
            "the follower waits for the leader"
        );
        let assignments = vec![
            (a.clone(), Bytes::from_static(b"A")),
            (b.clone(), Bytes::from_static(b"B")),
        ];
        assert_eq!(
            &ready(sync(&mut g, &a, assignments, now)).assignment[..],
            b"A"
        );
        assert_eq!(&ready(follower).assignment[..], b"B");
        assert_eq!(g.state, GroupState::Stable);

        // One leaves; the other is alone after the next rebalance.
        assert_eq!(g.leave(&b, None, None, now), 0);
        assert_eq!(g.state, GroupState::PreparingRebalance);
        assert_eq!(
            ready(g.join(request(&a, None), now, Duration::ZERO)).generation_id,
            3
        );
    }

    #[test]
    fn silent_members_expire_and_missing_members_are_dropped_at_the_rebalance_timeout() {
        let now = Instant::now();
        let mut g = group();
        let (a, join_a) = join_new(&mut g, now);
        ready(join_a);
        ready(sync(&mut g, &a, Vec::new(), now));
        let (b, join_b) = join_new(&mut g, now);
        // `a` never rejoins: at the rebalance timeout it is removed and `b` leads generation 2.
        g.expire(now + Duration::from_secs(5));
        assert_eq!(g.state, GroupState::PreparingRebalance);
        g.expire(now + REBALANCE);
        let joined = ready(join_b);
        assert_eq!(
            (joined.generation_id, joined.leader.as_str()),
            (2, b.as_str())
        );
        assert!(!g.members.contains_key(&a));
        ready(sync(&mut g, &b, Vec::new(), now + REBALANCE));
        // `b` stops heartbeating: after the session timeout the group is empty.
        g.expire(now + REBALANCE + SESSION + Duration::from_millis(1));
        assert_eq!(g.state, GroupState::Empty);
        assert!(g.members.is_empty());
    }

    #[test]
    fn initial_delay_holds_the_first_rebalance_of_an_empty_group() {
        let now = Instant::now();
        let mut g = group();
        let delay = Duration::from_secs(3);
        let id = ready(g.join(request("", None), now, delay)).member_id;
        let mut rx = g.join(request(&id, None), now, delay);
        assert!(rx.try_recv().is_err());
        g.expire(now + Duration::from_secs(1));
        assert!(rx.try_recv().is_err());
        g.expire(now + delay);
        assert_eq!(ready(rx).generation_id, 1);
    }

    #[test]
    fn static_member_rejoins_without_rebalance_and_fences_its_old_id() {
        let now = Instant::now();
        let mut g = group();
        let first = ready(g.join(request("", Some("i")), now, Duration::ZERO));
        assert_eq!(
            first.error_code, 0,
            "static members skip MEMBER_ID_REQUIRED"
        );
        let old = first.member_id;
        ready(sync(
            &mut g,
            &old,
            vec![(old.clone(), Bytes::from_static(b"X"))],
            now,
        ));
        let again = ready(g.join(request("", Some("i")), now, Duration::ZERO));
        assert_eq!((again.error_code, again.generation_id), (0, 1));
        assert_ne!(again.member_id, old);
        assert_eq!(g.state, GroupState::Stable, "no rebalance");
        let fresh = &again.member_id;
        let resynced = g.sync(fresh, Some("i"), 1, None, None, Vec::new(), now).0;
        assert_eq!(&ready(resynced).assignment[..], b"X");
        assert_eq!(
            g.heartbeat(&old, Some("i"), 1, now),
            code(E::FencedInstanceId)
        );
        let stale = ready(g.join(request(&old, Some("i")), now, Duration::ZERO));
        assert_eq!(stale.error_code, code(E::FencedInstanceId));
        assert_eq!(g.leave("", Some("i"), None, now), 0);
        assert!(g.members.is_empty());
    }

    #[test]
    fn commits_need_the_current_generation_or_an_empty_group() {
        let now = Instant::now();
        let mut g = group();
        assert_eq!(g.check_commit("", None, -1), Ok(()));
        let (a, join_a) = join_new(&mut g, now);
        ready(join_a);
        assert_eq!(
            g.check_commit(&a, None, 1),
            Err(code(E::RebalanceInProgress))
        );
        ready(sync(&mut g, &a, Vec::new(), now));
        assert_eq!(g.check_commit(&a, None, 1), Ok(()));
        assert_eq!(g.check_commit(&a, None, 0), Err(code(E::IllegalGeneration)));
        assert_eq!(g.check_commit("", None, -1), Err(code(E::UnknownMemberId)));
    }

    #[test]
    fn a_follower_rejoining_unchanged_keeps_the_generation() {
        let now = Instant::now();
        let mut g = group();
        let (a, join_a) = join_new(&mut g, now);
        ready(join_a);
        ready(sync(&mut g, &a, Vec::new(), now));
        let (b, join_b) = join_new(&mut g, now);
        ready(g.join(request(&a, None), now, Duration::ZERO));
        ready(join_b);
        let assignments = vec![(b.clone(), Bytes::from_static(b"B"))];
        ready(sync(&mut g, &a, assignments, now));
        let again = ready(g.join(request(&b, None), now, Duration::ZERO));
        assert_eq!((again.error_code, again.generation_id), (0, 2));
        assert_eq!(
            g.state,
            GroupState::Stable,
            "no rebalance for an unchanged follower"
        );
        assert_eq!(
            &ready(sync(&mut g, &b, Vec::new(), now)).assignment[..],
            b"B"
        );
    }

    #[test]
    fn joins_with_bad_timeouts_or_foreign_protocols_are_refused() {
        let now = Instant::now();
        let mut g = group();
        let mut short = request("", None);
        short.session_timeout = Duration::from_millis(100);
        assert_eq!(
            ready(g.join(short, now, Duration::ZERO)).error_code,
            code(E::InvalidSessionTimeout)
        );
        let (_, join_a) = join_new(&mut g, now);
        ready(join_a);
        let mut other = request("", None);
        other.protocols = vec![("roundrobin".into(), Bytes::new())];
        assert_eq!(
            ready(g.join(other, now, Duration::ZERO)).error_code,
            code(E::InconsistentGroupProtocol)
        );
        let mut connect = request("", None);
        connect.protocol_type = "connect".into();
        assert_eq!(
            ready(g.join(connect, now, Duration::ZERO)).error_code,
            code(E::InconsistentGroupProtocol)
        );
        assert_eq!(
            ready(g.join(request("ghost", None), now, Duration::ZERO)).error_code,
            code(E::UnknownMemberId)
        );
    }
}
