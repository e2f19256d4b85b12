//! A consumer group driven through heartbeats, as clients drive it: joins, incremental
//! rebalances, fencing, session and revocation timeouts, static members and regexes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_protocol::ResponseError as E;
use sluice_raft::state::{PartitionInfo, TopicInfo};
use uuid::Uuid;

use super::heartbeat::validate;
use super::*;

const SESSION: Duration = Duration::from_secs(45);
const REBALANCE_MS: i32 = 30_000;

fn topic_id(name: &str) -> Uuid {
    Uuid::from_u128(name.bytes().fold(7u128, |h, b| h * 31 + u128::from(b)))
}

fn topics(specs: &[(&str, usize)]) -> Topics {
    Arc::new(
        specs
            .iter()
            .map(|(name, n)| {
                let info = TopicInfo {
                    topic_id: topic_id(name),
                    name: name.to_string(),
                    partitions: vec![
                        PartitionInfo {
                            vchannel: 1,
                            pchannel: 0
                        };
                        *n
                    ],
                    configs: BTreeMap::new(),
                };
                (name.to_string(), info)
            })
            .collect(),
    )
}

fn settings() -> Settings {
    Settings {
        session_timeout: SESSION,
        assignors: Assignor::ALL.to_vec(),
    }
}

fn group() -> ConsumerGroup {
    ConsumerGroup::new(&slog::Logger::root(slog::Discard, slog::o!()))
}

fn parts(topic: &str, p: impl IntoIterator<Item = i32>) -> Assignment {
    let set: BTreeSet<i32> = p.into_iter().collect();
    if set.is_empty() {
        Assignment::new()
    } else {
        [(topic_id(topic), set)].into()
    }
}

/// A simulated client: what it owns, its epoch, and the answers it got.
struct Client {
    id: String,
    epoch: i32,
    owned: Assignment,
    instance: Option<String>,
}

impl Client {
    fn new(id: &str) -> Client {
        Client {
            id: id.into(),
            epoch: 0,
            owned: Assignment::new(),
            instance: None,
        }
    }

    fn request(&self, subscription: &[&str]) -> HeartbeatRequest {
        let joining = self.epoch == 0;
        HeartbeatRequest {
            member_id: self.id.clone(),
            member_epoch: self.epoch,
            instance_id: self.instance.clone(),
            rebalance_timeout_ms: if joining { REBALANCE_MS } else { -1 },
            subscribed_topic_names: joining
                .then(|| subscription.iter().map(|s| s.to_string()).collect()),
            owned: Some(self.owned.clone()),
            client_id: self.id.clone(),
            ..HeartbeatRequest::default()
        }
    }

    /// Sends a heartbeat; like the Java client, takes the assignment it is given at once
    /// (revoking what it lost, adding what it got).
    fn beat(&mut self, g: &mut ConsumerGroup, t: &Topics, now: Instant) -> HeartbeatResponse {
        let request = self.request(&["t"]);
        self.send(g, request, t, now).expect("heartbeat accepted")
    }

    fn send(
        &mut self,
        g: &mut ConsumerGroup,
        request: HeartbeatRequest,
        t: &Topics,
        now: Instant,
    ) -> Result<HeartbeatResponse, HeartbeatError> {
        validate("g", &request, &settings())?;
        let response = g.heartbeat(request, t, &settings(), now)?;
        self.epoch = response.member_epoch;
        if let Some(a) = &response.assignment {
            self.owned = a.clone();
        }
        Ok(response)
    }
}

fn owned_count(c: &Client) -> usize {
    member::count(&c.owned)
}

/// Heartbeats every client in turn until none changes any more.
fn settle(g: &mut ConsumerGroup, clients: &mut [&mut Client], t: &Topics, now: Instant) {
    for _ in 0..20 {
        let before: Vec<(i32, Assignment)> =
            clients.iter().map(|c| (c.epoch, c.owned.clone())).collect();
        for c in clients.iter_mut() {
            c.beat(g, t, now);
        }
        let after: Vec<(i32, Assignment)> =
            clients.iter().map(|c| (c.epoch, c.owned.clone())).collect();
        if before == after && g.state() == ConsumerGroupState::Stable {
            return;
        }
    }
    panic!("group did not settle: {:?}", g.state());
}

fn assert_disjoint_cover(clients: &[&Client], topic: &str, n: i32) {
    let mut all = BTreeSet::new();
    for c in clients {
        for p in c.owned.get(&topic_id(topic)).into_iter().flatten() {
            assert!(all.insert(*p), "{topic}-{p} owned twice");
        }
    }
    assert_eq!(all, (0..n).collect::<BTreeSet<_>>());
}

#[test]
fn a_partition_moves_only_after_its_owner_revoked_it() {
    let t = topics(&[("t", 12)]);
    let now = Instant::now();
    let mut g = group();
    let mut a = Client::new("a");
    let r = a.beat(&mut g, &t, now);
    assert_eq!((r.member_epoch, owned_count(&a)), (1, 12));
    assert_eq!(g.state(), ConsumerGroupState::Stable);

    // b joins: the group epoch moves to 2, a must give up 6 partitions first.
    let mut b = Client::new("b");
    let r = b.beat(&mut g, &t, now);
    assert_eq!(g.group_epoch, 2);
    assert_eq!(r.member_epoch, 2, "b reaches the new epoch, waiting");
    assert!(b.owned.is_empty(), "nothing is free yet");
    assert_eq!(g.state(), ConsumerGroupState::Reconciling);
    // a's heartbeat asks it to revoke; it stays at epoch 1 until it stops reporting them.
    let before = a.owned.clone();
    let mut request = a.request(&["t"]);
    request.owned = Some(before.clone());
    let r = a.send(&mut g, request, &t, now).unwrap();
    assert_eq!(r.member_epoch, 1);
    let kept = r.assignment.expect("new assignment");
    assert_eq!(member::count(&kept), 6);
    assert!(member::is_subset(&kept, &before));
    // b still waits: a has not confirmed the revocation.
    let r = b.beat(&mut g, &t, now);
    assert!(r.assignment.is_none() && b.owned.is_empty());
    // a confirms (it owns only what it kept): epoch 2.
    assert_eq!(a.beat(&mut g, &t, now).member_epoch, 2);
    // b's next heartbeat brings it the released partitions.
    let r = b.beat(&mut g, &t, now);
    assert_eq!(member::count(&r.assignment.expect("released")), 6);
    assert_eq!(g.state(), ConsumerGroupState::Stable);
    assert_disjoint_cover(&[&a, &b], "t", 12);
}

#[test]
fn three_members_split_twelve_and_survivors_keep_theirs_when_one_leaves() {
    let t = topics(&[("t", 12)]);
    let now = Instant::now();
    let mut g = group();
    let (mut a, mut b, mut c) = (Client::new("a"), Client::new("b"), Client::new("c"));
    settle(&mut g, &mut [&mut a, &mut b, &mut c], &t, now);
    assert_eq!(
        [owned_count(&a), owned_count(&b), owned_count(&c)],
        [4, 4, 4]
    );
    assert_disjoint_cover(&[&a, &b, &c], "t", 12);
    let (a_before, b_before) = (a.owned.clone(), b.owned.clone());

    // c leaves with epoch -1: a and b keep their partitions and add c's.
    let mut leave = c.request(&["t"]);
    leave.member_epoch = -1;
    let r = c.send(&mut g, leave, &t, now).unwrap();
    assert_eq!(r.member_epoch, -1);
    settle(&mut g, &mut [&mut a, &mut b], &t, now);
    assert_eq!([owned_count(&a), owned_count(&b)], [6, 6]);
    assert!(member::is_subset(&a_before, &a.owned));
    assert!(member::is_subset(&b_before, &b.owned));
    assert_disjoint_cover(&[&a, &b], "t", 12);
}

#[test]
fn silent_members_are_fenced_after_the_session_timeout() {
    let t = topics(&[("t", 6)]);
    let now = Instant::now();
    let mut g = group();
    let (mut a, mut b) = (Client::new("a"), Client::new("b"));
    settle(&mut g, &mut [&mut a, &mut b], &t, now);
    let later = now + SESSION / 2;
    a.beat(&mut g, &t, later);
    assert!(!g.expire(now + SESSION - Duration::from_millis(1)));
    // b stopped heartbeating: fenced at its deadline, a is not.
    assert!(g.expire(now + SESSION));
    assert!(!g.members.contains_key("b") && g.members.contains_key("a"));
    settle(&mut g, &mut [&mut a], &t, now + SESSION);
    assert_eq!(owned_count(&a), 6);
    // b's next heartbeat is from an unknown member: it must rejoin.
    let err = b
        .send(&mut g, b.request(&["t"]), &t, now + SESSION)
        .unwrap_err();
    assert_eq!(err.code, E::UnknownMemberId.code());
}

#[test]
fn a_member_that_does_not_revoke_within_its_rebalance_timeout_is_fenced() {
    let t = topics(&[("t", 4)]);
    let now = Instant::now();
    let mut g = group();
    let mut a = Client::new("a");
    a.beat(&mut g, &t, now);
    let mut b = Client::new("b");
    b.beat(&mut g, &t, now);
    // a is told to revoke but keeps reporting everything it had.
    let mut request = a.request(&["t"]);
    request.owned = Some(parts("t", 0..4));
    a.send(&mut g, request, &t, now).unwrap();
    let deadline = now + Duration::from_millis(REBALANCE_MS as u64);
    b.beat(&mut g, &t, deadline - Duration::from_millis(1));
    let mut request = a.request(&["t"]);
    request.owned = Some(parts("t", 0..4));
    request.member_epoch = 1;
    g.heartbeat(
        request,
        &t,
        &settings(),
        deadline - Duration::from_millis(1),
    )
    .unwrap();
    assert!(g.expire(deadline));
    assert!(!g.members.contains_key("a"));
    settle(&mut g, &mut [&mut b], &t, deadline);
    assert_eq!(owned_count(&b), 4);
}

#[test]
fn epochs_other_than_the_current_one_are_fenced_except_a_lost_answer() {
    let t = topics(&[("t", 4)]);
    let now = Instant::now();
    let mut g = group();
    let (mut a, mut b) = (Client::new("a"), Client::new("b"));
    settle(&mut g, &mut [&mut a, &mut b], &t, now);
    let epoch = a.epoch;
    assert!(epoch > 1);
    let mut ahead = a.request(&["t"]);
    ahead.member_epoch = epoch + 1;
    let err = g.heartbeat(ahead, &t, &settings(), now).unwrap_err();
    assert_eq!(err.code, E::FencedMemberEpoch.code());
    // The previous epoch with a subset of the assignment: the answer may have been lost.
    let previous = g.members["a"].previous_member_epoch;
    let mut lost = a.request(&["t"]);
    lost.member_epoch = previous;
    let r = g.heartbeat(lost, &t, &settings(), now).unwrap();
    assert_eq!(r.member_epoch, epoch);
    // An older one, or the previous one owning more: fenced.
    let mut stale = a.request(&["t"]);
    stale.member_epoch = previous;
    stale.owned = Some(parts("t", 0..4));
    let err = g.heartbeat(stale, &t, &settings(), now).unwrap_err();
    assert_eq!(err.code, E::FencedMemberEpoch.code());
    // Fenced, the client drops everything and rejoins with epoch 0 under the same id.
    a.epoch = 0;
    a.owned.clear();
    settle(&mut g, &mut [&mut a, &mut b], &t, now);
    assert_disjoint_cover(&[&a, &b], "t", 4);
}

#[test]
fn a_static_member_comes_back_to_its_partitions_without_a_new_group_epoch() {
    let t = topics(&[("t", 6)]);
    let now = Instant::now();
    let mut g = group();
    let (mut a, mut b) = (Client::new("a1"), Client::new("b"));
    a.instance = Some("inst-a".into());
    settle(&mut g, &mut [&mut a, &mut b], &t, now);
    let mine = a.owned.clone();
    let epoch = g.group_epoch;

    // A second process with the same instance id while the first is alive: refused.
    let mut twin = Client::new("a2");
    twin.instance = Some("inst-a".into());
    let err = twin
        .send(&mut g, twin.request(&["t"]), &t, now)
        .unwrap_err();
    assert_eq!(err.code, E::UnreleasedInstanceId.code());

    // The first leaves for now (-2): it keeps its partitions; nobody else gets them.
    let mut leave = a.request(&["t"]);
    leave.member_epoch = -2;
    assert_eq!(a.send(&mut g, leave, &t, now).unwrap().member_epoch, -2);
    b.beat(&mut g, &t, now);
    assert_eq!(owned_count(&b), 3);

    // The new process takes over: same partitions, same group epoch.
    let r = twin.beat(&mut g, &t, now);
    assert_eq!(r.assignment.as_ref(), Some(&mine));
    assert_eq!(g.group_epoch, epoch);
    assert!(!g.members.contains_key("a1"));
    // The old member id is fenced out.
    let mut old = a.request(&["t"]);
    old.member_epoch = 5;
    let err = g.heartbeat(old, &t, &settings(), now).unwrap_err();
    assert_eq!(err.code, E::FencedInstanceId.code());
}

#[test]
fn a_static_member_that_does_not_return_is_fenced_after_its_session() {
    let t = topics(&[("t", 2)]);
    let now = Instant::now();
    let mut g = group();
    let (mut a, mut b) = (Client::new("a"), Client::new("b"));
    a.instance = Some("i".into());
    settle(&mut g, &mut [&mut a, &mut b], &t, now);
    let mut leave = a.request(&["t"]);
    leave.member_epoch = -2;
    a.send(&mut g, leave, &t, now).unwrap();
    b.beat(&mut g, &t, now + SESSION);
    assert!(g.expire(now + SESSION));
    settle(&mut g, &mut [&mut b], &t, now + SESSION);
    assert_eq!(owned_count(&b), 2);
}

#[test]
fn regex_subscriptions_follow_new_topics_and_skip_internal_ones() {
    let now = Instant::now();
    let mut g = group();
    let t1 = topics(&[("orders-a", 2), ("payments", 2), ("__consumer_offsets", 50)]);
    let mut c = Client::new("c");
    let mut request = c.request(&[]);
    request.subscribed_topic_names = None;
    request.subscribed_topic_regex = Some("orders-.*".into());
    c.send(&mut g, request, &t1, now).unwrap();
    assert_eq!(c.owned, parts("orders-a", 0..2));
    let epoch = g.group_epoch;
    // A matching topic appears: the group epoch moves and the member gets it.
    let t2 = topics(&[("orders-a", 2), ("orders-b", 1), ("payments", 2)]);
    c.beat(&mut g, &t2, now);
    assert_eq!(g.group_epoch, epoch + 1);
    assert_eq!(member::count(&c.owned), 3);
    // New metadata that changes nothing for the group does not move it.
    let t3 = topics(&[("orders-a", 2), ("orders-b", 1), ("payments", 3)]);
    c.beat(&mut g, &t3, now);
    assert_eq!(g.group_epoch, epoch + 1);
}

#[test]
fn the_most_requested_assignor_is_used() {
    let t = topics(&[("t", 4)]);
    let mut g = group();
    assert_eq!(g.preferred_assignor(Assignor::Uniform), Assignor::Uniform);
    let mut c = Client::new("c");
    let mut request = c.request(&["t"]);
    request.server_assignor = Some("range".into());
    c.send(&mut g, request, &t, Instant::now()).unwrap();
    assert_eq!(g.preferred_assignor(Assignor::Uniform), Assignor::Range);
}

#[test]
fn malformed_heartbeats_are_refused() {
    let s = settings();
    let ok = Client::new("m").request(&["t"]);
    assert!(validate("g", &ok, &s).is_ok());
    let code = |r: &HeartbeatRequest, group: &str| validate(group, r, &s).unwrap_err().code;
    assert_eq!(code(&ok, " "), E::InvalidRequest.code());
    let mut r = ok.clone();
    r.owned = Some(parts("t", [1]));
    assert_eq!(code(&r, "g"), E::InvalidRequest.code(), "joins own nothing");
    let mut r = ok.clone();
    r.rebalance_timeout_ms = -1;
    assert_eq!(code(&r, "g"), E::InvalidRequest.code());
    let mut r = ok.clone();
    r.subscribed_topic_names = None;
    assert_eq!(code(&r, "g"), E::InvalidRequest.code());
    let mut r = ok.clone();
    r.member_epoch = -3;
    assert_eq!(code(&r, "g"), E::InvalidRequest.code());
    let mut r = ok.clone();
    r.member_epoch = 4;
    r.member_id = String::new();
    assert_eq!(code(&r, "g"), E::InvalidRequest.code());
    let mut r = ok.clone();
    r.member_epoch = -2;
    assert_eq!(
        code(&r, "g"),
        E::InvalidRequest.code(),
        "-2 needs an instance id"
    );
    let mut r = ok.clone();
    r.server_assignor = Some("sticky".into());
    assert_eq!(code(&r, "g"), E::UnsupportedAssignor.code());
    let mut r = ok.clone();
    r.subscribed_topic_regex = Some("(".into());
    assert_eq!(code(&r, "g"), E::InvalidRegularExpression.code());
    let mut r = ok;
    r.instance_id = Some(String::new());
    assert_eq!(code(&r, "g"), E::InvalidRequest.code());
}

#[test]
fn a_join_without_member_id_gets_one_and_the_full_assignment() {
    let t = topics(&[("t", 3)]);
    let mut g = group();
    let mut c = Client::new("");
    let r = c.beat(&mut g, &t, Instant::now());
    assert!(!r.member_id.is_empty());
    assert_eq!(r.assignment, Some(parts("t", 0..3)));
    c.id = r.member_id;
    // A regular heartbeat without changes carries no assignment.
    assert_eq!(c.beat(&mut g, &t, Instant::now()).assignment, None);
}
