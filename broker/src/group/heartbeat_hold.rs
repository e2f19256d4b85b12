//! Held heartbeats, a long poll: a classic member's Heartbeat to a Stable group is answered when
//! something happens instead of at once, so the member learns of a rebalance the moment it
//! starts rather than at its next Heartbeat (`heartbeat.interval.ms` later, 3 s by default).
//! Clients need no change: to them a held Heartbeat is a slow one.
//!
//! A held Heartbeat is answered
//! - REBALANCE_IN_PROGRESS when the group starts a rebalance (`prepare_rebalance`);
//! - UNKNOWN_MEMBER_ID when the member expires or is removed at a rebalance timeout,
//!   FENCED_INSTANCE_ID when its static identity moves to a new member id, the coordinator's
//!   error (NOT_COORDINATOR) when the group is unloaded; NONE when the member leaves
//!   (LeaveGroup), since the Heartbeat came first, and a client that closes must not reset its
//!   state over it (a member removed by another client's LeaveGroup learns it from its next
//!   Heartbeat, as with Kafka);
//! - as a Heartbeat arriving at that moment would be (NONE while the group stays Stable) when
//!   the connection receives its next request, when the connection closes (broker shutdown
//!   closes it too), or when the hold's cap passes. Responses go out in request order, so a held
//!   Heartbeat must never delay the OffsetCommit, LeaveGroup or Heartbeat sent after it.
//!
//! Sessions. The member's session is refreshed when its Heartbeat arrives and again when it is
//! answered, and the cap is at most a third of the member's session timeout, so no session timer
//! can run out because of a hold:
//! - the Java client's heartbeat thread sends the next Heartbeat when its interval timer expires
//!   whether or not one is in flight (`AbstractCoordinator.HeartbeatThread`), and that one
//!   releases the previous: answers still come one interval apart, and each waited far less than
//!   `request.timeout.ms` (30 s);
//! - librdkafka sends no Heartbeat while one is in flight (`rd_kafka_cgrp_heartbeat`), so its
//!   hold lasts until the cap; the next one goes out at the first interval tick after the answer,
//!   so answers come `ceil(cap / interval) * interval` apart: one interval when the cap is below
//!   it, else less than `cap + interval` with `interval < cap <= session / 3`, well within the
//!   session; its Heartbeat request times out after `session.timeout.ms`;
//! - the coordinator's timer sees a refresh at least every `max(cap, interval)`.
//!
//! Static members (`group.instance.id`) are answered at once: they close without a LeaveGroup,
//! and the Java client's `close()` waits for every request in flight to the coordinator, so a
//! held Heartbeat would hold up a restart by up to the cap, unless the close commits offsets.

use std::future::Future;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use sluice_protocol::ResponseError as E;
use tokio::sync::oneshot;

use super::state::{Group, GroupState, code};

/// A member's Heartbeat held open, answered through `reply`.
pub struct HeldHeartbeat {
    id: u64,
    reply: oneshot::Sender<i16>,
}

impl HeldHeartbeat {
    /// Answers the held Heartbeat with a Kafka error code.
    pub fn answer(self, error_code: i16) {
        let _ = self.reply.send(error_code);
    }
}

/// The handler's side of a held Heartbeat.
pub struct Hold {
    id: u64,
    answer: oneshot::Receiver<i16>,
    cap: Duration,
}

impl Hold {
    /// The longest the Heartbeat is held.
    pub fn cap(&self) -> Duration {
        self.cap
    }
}

impl Group {
    /// Holds the Heartbeat `member_id` just sent, which was answered NONE. `None` (answer at
    /// once) unless the group is a Stable classic group, the member is dynamic and `max` is not
    /// zero.
    pub fn hold_heartbeat(&mut self, member_id: &str, max: Duration) -> Option<Hold> {
        if max.is_zero() || self.state != GroupState::Stable || self.consumer.is_some() {
            return None;
        }
        let member = self.members.get_mut(member_id)?;
        if member.group_instance_id.is_some() {
            return None;
        }
        let cap = max.min(member.session_timeout / 3);
        if cap.is_zero() {
            return None;
        }
        self.holds += 1;
        let id = self.holds;
        let (reply, answer) = oneshot::channel();
        if let Some(older) = member.held_heartbeat.replace(HeldHeartbeat { id, reply }) {
            // The member heartbeats on another connection too: the newer Heartbeat is held.
            older.answer(0);
        }
        Some(Hold { id, answer, cap })
    }

    /// Answers every held Heartbeat with `error_code`; `now` refreshes the members' sessions
    /// (a rebalance starts), `None` leaves them (the group is gone).
    pub(super) fn release_heartbeats(&mut self, error_code: i16, now: Option<Instant>) {
        for m in self.members.values_mut() {
            if let Some(held) = m.held_heartbeat.take() {
                if let Some(now) = now {
                    m.heartbeat_deadline = now + m.session_timeout;
                }
                held.answer(error_code);
            }
        }
    }

    /// Ends a hold for a reason outside the group (a later request, the cap, the connection
    /// closing): the answer the group already gave, else what a Heartbeat arriving now gets.
    fn end_hold(
        &mut self,
        hold: &mut Hold,
        member_id: &str,
        group_instance_id: Option<&str>,
        generation: i32,
        now: Instant,
    ) -> i16 {
        // The group answers under its lock, which we hold: either it did, or it no longer can.
        if let Ok(error_code) = hold.answer.try_recv() {
            return error_code;
        }
        if let Some(m) = self.members.get_mut(member_id)
            && m.held_heartbeat.as_ref().is_some_and(|h| h.id == hold.id)
        {
            m.held_heartbeat = None;
        }
        self.heartbeat(member_id, group_instance_id, generation, now)
    }
}

/// Waits until a held Heartbeat is due; returns its error code. `next_request` completes when
/// the member's connection receives another request or closes.
pub async fn wait(
    group: &Mutex<Group>,
    mut hold: Hold,
    member_id: &str,
    group_instance_id: Option<&str>,
    generation: i32,
    next_request: impl Future<Output = ()>,
) -> i16 {
    tokio::select! {
        biased;
        answer = &mut hold.answer => {
            if let Ok(error_code) = answer {
                return error_code;
            }
        }
        () = next_request => {}
        () = tokio::time::sleep(hold.cap) => {}
    }
    group.lock().end_hold(
        &mut hold,
        member_id,
        group_instance_id,
        generation,
        Instant::now(),
    )
}

/// The answer of a held Heartbeat whose member was removed.
pub(super) fn removed(held: HeldHeartbeat) {
    held.answer(code(E::UnknownMemberId));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::group::membership::JoinRequest;
    use crate::group::state::JoinOutcome;
    use bytes::Bytes;
    use std::sync::Arc;
    use tokio::sync::Notify;

    const SESSION: Duration = Duration::from_secs(45);
    const MAX: Duration = Duration::from_secs(5);

    fn request(member_id: &str) -> JoinRequest {
        JoinRequest {
            member_id: member_id.into(),
            group_instance_id: None,
            client_id: "client".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout: SESSION,
            rebalance_timeout: Duration::from_secs(30),
            protocol_type: "consumer".into(),
            protocols: vec![("range".into(), Bytes::from_static(b"sub"))],
            require_known_member_id: true,
            reason: None,
        }
    }

    /// A Stable group of one member at generation 1; returns it and the member id.
    fn stable_group() -> (Arc<Mutex<Group>>, String) {
        let now = Instant::now();
        let mut g = Group::new("g", 0, &slog::Logger::root(slog::Discard, slog::o!()));
        let id = g
            .join(request(""), now, Duration::ZERO)
            .try_recv()
            .unwrap()
            .member_id;
        g.join(request(&id), now, Duration::ZERO)
            .try_recv()
            .unwrap();
        g.sync(&id, None, 1, None, None, Vec::new(), now)
            .0
            .try_recv()
            .unwrap();
        assert_eq!(g.state, GroupState::Stable);
        (Arc::new(Mutex::new(g)), id)
    }

    /// A second member joins (its JoinGroup is pending): the group prepares a rebalance.
    fn second_member_joins(group: &Mutex<Group>) -> oneshot::Receiver<JoinOutcome> {
        let b = group
            .lock()
            .join(request(""), Instant::now(), Duration::ZERO)
            .try_recv()
            .unwrap()
            .member_id;
        group
            .lock()
            .join(request(&b), Instant::now(), Duration::ZERO)
    }

    /// Sends a Heartbeat as the handler does: answered at once or held until `next` fires.
    fn heartbeat(
        group: &Arc<Mutex<Group>>,
        member_id: &str,
        max: Duration,
        next: Arc<Notify>,
    ) -> tokio::task::JoinHandle<(i16, bool)> {
        let (answer, hold) = {
            let mut g = group.lock();
            let answer = g.heartbeat(member_id, None, 1, Instant::now());
            (answer, g.hold_heartbeat(member_id, max))
        };
        let group = group.clone();
        let member_id = member_id.to_string();
        tokio::spawn(async move {
            match hold {
                None => (answer, false),
                Some(hold) => {
                    let next = async move { next.notified().await };
                    let answer = wait(&group, hold, &member_id, None, 1, next).await;
                    (answer, true)
                }
            }
        })
    }

    /// Lets spawned tasks run until they wait (time is paused in these tests).
    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_rebalance_releases_the_held_heartbeat_at_once() {
        let (group, a) = stable_group();
        let held = heartbeat(&group, &a, MAX, Arc::new(Notify::new()));
        settle().await;
        assert!(!held.is_finished(), "held while the group is Stable");
        let started = tokio::time::Instant::now();
        // A second member joins: the group prepares a rebalance.
        let _pending = second_member_joins(&group);
        assert_eq!(held.await.unwrap(), (code(E::RebalanceInProgress), true));
        assert_eq!(started.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn a_later_request_on_the_connection_releases_it_with_none() {
        let (group, a) = stable_group();
        let next = Arc::new(Notify::new());
        let held = heartbeat(&group, &a, MAX, next.clone());
        settle().await;
        assert!(!held.is_finished());
        let started = tokio::time::Instant::now();
        next.notify_one();
        assert_eq!(held.await.unwrap(), (0, true));
        assert_eq!(started.elapsed(), Duration::ZERO);
        assert!(group.lock().members[&a].held_heartbeat.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn leaving_expiring_being_fenced_or_unloaded_releases_it() {
        type Ending = fn(&mut Group, &str);
        let endings: [(&str, Ending, i16); 4] = [
            (
                "leaves",
                |g, a| assert_eq!(g.leave(a, None, None, Instant::now()), 0),
                0,
            ),
            (
                "expires",
                |g, a| {
                    g.members.get_mut(a).unwrap().heartbeat_deadline = Instant::now();
                    g.expire(Instant::now());
                    assert!(g.members.is_empty());
                },
                code(E::UnknownMemberId),
            ),
            (
                "is fenced",
                |g, a| {
                    // Static members' Heartbeats are not held; were one held, the instance
                    // rejoining under a new member id would answer it.
                    g.static_members.insert("i".into(), a.to_string());
                    g.members.get_mut(a).unwrap().group_instance_id = Some("i".into());
                    let mut again = request("");
                    again.group_instance_id = Some("i".into());
                    let joined = g
                        .join(again, Instant::now(), Duration::ZERO)
                        .try_recv()
                        .unwrap();
                    assert_ne!(joined.member_id, a);
                },
                code(E::FencedInstanceId),
            ),
            (
                "moves to another coordinator",
                |g, _| g.shut_down(code(E::NotCoordinator)),
                code(E::NotCoordinator),
            ),
        ];
        for (what, end, expected) in endings {
            let (group, a) = stable_group();
            let held = heartbeat(&group, &a, MAX, Arc::new(Notify::new()));
            settle().await;
            assert!(!held.is_finished(), "{what}");
            end(&mut group.lock(), &a);
            assert_eq!(held.await.unwrap(), (expected, true), "the member {what}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_cap_releases_it_and_refreshes_the_session() {
        let (group, a) = stable_group();
        let held = heartbeat(&group, &a, MAX, Arc::new(Notify::new()));
        settle().await;
        let started = tokio::time::Instant::now();
        // (The paused clock is tokio's; sessions run on the real one.)
        group.lock().members.get_mut(&a).unwrap().heartbeat_deadline = Instant::now();
        assert_eq!(held.await.unwrap(), (0, true));
        assert_eq!(started.elapsed(), MAX);
        let deadline = group.lock().members[&a].heartbeat_deadline;
        assert!(
            deadline > Instant::now() + SESSION / 2,
            "answering refreshed the session"
        );

        // The cap never exceeds a third of the session timeout.
        let hold = group
            .lock()
            .hold_heartbeat(&a, Duration::from_secs(60))
            .unwrap();
        assert_eq!(hold.cap(), SESSION / 3);
    }

    #[tokio::test(start_paused = true)]
    async fn nothing_is_held_when_disabled_for_static_members_or_while_rebalancing() {
        let (group, a) = stable_group();
        let answered = heartbeat(&group, &a, Duration::ZERO, Arc::new(Notify::new()));
        assert_eq!(answered.await.unwrap(), (0, false));
        group.lock().members.get_mut(&a).unwrap().group_instance_id = Some("i".into());
        let answered = heartbeat(&group, &a, MAX, Arc::new(Notify::new()));
        assert_eq!(answered.await.unwrap(), (0, false));
        group.lock().members.get_mut(&a).unwrap().group_instance_id = None;

        let _pending = second_member_joins(&group);
        let answered = heartbeat(&group, &a, MAX, Arc::new(Notify::new()));
        assert_eq!(
            answered.await.unwrap(),
            (code(E::RebalanceInProgress), false)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_newer_heartbeat_of_the_member_releases_the_older() {
        let (group, a) = stable_group();
        let first = heartbeat(&group, &a, MAX, Arc::new(Notify::new()));
        settle().await;
        let second = heartbeat(&group, &a, MAX, Arc::new(Notify::new()));
        settle().await;
        assert_eq!(first.await.unwrap(), (0, true));
        assert!(!second.is_finished());
        group
            .lock()
            .prepare_rebalance(Instant::now(), Duration::ZERO, "test");
        assert_eq!(second.await.unwrap(), (code(E::RebalanceInProgress), true));
    }
}
