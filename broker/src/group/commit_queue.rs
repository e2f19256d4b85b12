//! OffsetCommits of one group waiting for the group's write lock. Whoever takes the lock next
//! appends every waiting commit back to back, so one group commit of the pchannel (one fsync)
//! makes them all durable; then, still under the lock, it updates the cache in log order and
//! answers each. Without this a client pipelining commits for one group got one fsync per commit,
//! each waiting its turn behind the last. Kafka's coordinator runtime batches the writes of
//! concurrent requests the same way.
//!
//! The queue's order is the log's order, and a connection's commits join it in the order they
//! arrived ([`CommitTurn`]): Kafka handles one request of a connection at a time, so a client
//! pipelining commits of one partition expects the last one sent to win.

use parking_lot::Mutex;
use sluice_protocol::ResponseError as E;
use tokio::sync::oneshot;
use tokio::sync::oneshot::error::TryRecvError;

use super::coordinator::{GroupCoordinator, GroupHandle, Home};
use super::offsets::OffsetsRecord;
use super::state::GroupState;

/// One OffsetCommit's records and where its outcome goes.
struct Queued {
    records: Vec<OffsetsRecord>,
    reply: oneshot::Sender<Result<(), i16>>,
}

/// The commits of one group waiting to be written.
#[derive(Default)]
pub struct CommitQueue(Mutex<Vec<Queued>>);

/// An OffsetCommit's place among the commits of its connection. Requests of one connection run
/// concurrently (and the runtime may start the last of a burst first), so a commit waits until
/// the connection's previous commit joined its group's queue, or finished without writing.
/// The default turn waits for nothing.
#[derive(Default)]
pub struct CommitTurn {
    previous: Option<oneshot::Receiver<()>>,
    queued: Option<oneshot::Sender<()>>,
}

impl CommitTurn {
    /// The turn after `last` (the connection's latest commit), which it replaces.
    pub fn after(last: &mut Option<oneshot::Receiver<()>>) -> CommitTurn {
        let (queued, next) = oneshot::channel();
        CommitTurn {
            previous: last.replace(next),
            queued: Some(queued),
        }
    }
}

/// Writes one OffsetCommit's offset records and, once durable, puts them in the group's cache.
/// Returns the Kafka error code every partition of the commit gets when it failed.
pub async fn commit(
    coordinator: &GroupCoordinator,
    home: &Home,
    handle: &GroupHandle,
    records: Vec<OffsetsRecord>,
    turn: CommitTurn,
) -> Result<(), i16> {
    if let Some(previous) = turn.previous {
        // An error means the previous commit ended without writing: our turn as well.
        let _ = previous.await;
    }
    let (reply, mut outcome) = oneshot::channel();
    handle.commits.0.lock().push(Queued { records, reply });
    if let Some(queued) = turn.queued {
        let _ = queued.send(());
    }
    let _writes = handle.writes.lock().await;
    // A holder before us may have taken this commit with its own; it answered before it let
    // the lock go.
    match outcome.try_recv() {
        Ok(done) => return done,
        Err(TryRecvError::Empty) => {}
        // The holder that took it failed without answering (it panicked).
        Err(TryRecvError::Closed) => return Err(E::UnknownServerError.code()),
    }
    write_queued(coordinator, home, handle).await;
    outcome
        .try_recv()
        .expect("the lock holder answers every commit it takes, its own included")
}

/// Appends every queued commit, updates the cache with those that became durable and answers
/// them all. Called with the group's write lock held.
async fn write_queued(coordinator: &GroupCoordinator, home: &Home, handle: &GroupHandle) {
    let queued = std::mem::take(&mut *handle.commits.0.lock());
    // DeleteGroups removed the group while these commits waited: Kafka answers
    // COORDINATOR_NOT_AVAILABLE so the client looks the group up again and retries.
    if handle.group.lock().state == GroupState::Dead {
        for q in queued {
            let _ = q.reply.send(Err(E::CoordinatorNotAvailable.code()));
        }
        return;
    }
    let requests: Vec<&[OffsetsRecord]> = queued.iter().map(|q| q.records.as_slice()).collect();
    match coordinator.append_each(home, &requests).await {
        Err(code) => {
            for q in queued {
                let _ = q.reply.send(Err(code));
            }
        }
        Ok((_fence, outcomes)) => {
            let mut group = handle.group.lock();
            for (q, outcome) in queued.into_iter().zip(outcomes) {
                if outcome.is_ok() {
                    for record in &q.records {
                        if let OffsetsRecord::Offset {
                            topic,
                            partition,
                            value: Some(entry),
                            ..
                        } = record
                        {
                            group
                                .offsets
                                .insert((topic.clone(), *partition), entry.clone());
                        }
                    }
                }
                let _ = q.reply.send(outcome);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use log_store::VChannelId;
    use slog::Logger;

    use super::*;
    use crate::config::Config;
    use crate::group::offsets::{OffsetEntry, decode_batch};
    use crate::metrics::Metrics;
    use crate::streaming::StreamingNode;

    /// A coordinator serving group "g" from vchannel 9 of a pchannel opened in `dir`.
    struct Setup {
        metrics: Arc<Metrics>,
        coordinator: Arc<GroupCoordinator>,
        home: Home,
        handle: Arc<GroupHandle>,
        _node: StreamingNode,
    }

    fn setup(dir: &std::path::Path) -> Setup {
        let config = Config {
            data_dir: dir.to_path_buf(),
            segment_bytes: 1 << 20,
            ..Config::default()
        };
        let metrics = Arc::new(Metrics::new());
        let log = Logger::root(slog::Discard, slog::o!());
        let node = StreamingNode::new(&config, metrics.clone(), log.clone());
        let coordinator = Arc::new(GroupCoordinator::new(Duration::ZERO, log));
        let home = Home {
            partition: 3,
            vchannel: 9,
            wal: node.open(0, 1).unwrap(),
            load: coordinator.mark_loaded(3, 1),
        };
        let handle = coordinator.get_or_create("g", &home);
        Setup {
            metrics,
            coordinator,
            home,
            handle,
            _node: node,
        }
    }

    fn offset(topic: &str, partition: i32, offset: i64) -> OffsetsRecord {
        OffsetsRecord::Offset {
            group: "g".into(),
            topic: topic.into(),
            partition,
            value: Some(OffsetEntry {
                offset,
                leader_epoch: -1,
                metadata: String::new(),
                commit_timestamp: 0,
            }),
        }
    }

    /// The offsets written to the group's vchannel, in log order.
    fn logged(home: &Home) -> Vec<((String, i32), i64)> {
        let mut out = Vec::new();
        for entry in home
            .wal
            .log
            .read(VChannelId(home.vchannel), 0, 1 << 20)
            .unwrap()
        {
            for r in decode_batch(&entry.payload).unwrap() {
                if let OffsetsRecord::Offset {
                    topic,
                    partition,
                    value: Some(v),
                    ..
                } = r
                {
                    out.push(((topic, partition), v.offset));
                }
            }
        }
        out
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pipelined_commits_share_fsyncs_and_the_cache_follows_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let s = setup(dir.path());
        // 200 commits in flight at once, as a client pipelining commits sends them; the
        // partitions repeat, so only the log's order says which offset is the last.
        const COMMITS: i64 = 200;
        let mut tasks = Vec::new();
        for i in 0..COMMITS {
            let (coordinator, home, handle) =
                (s.coordinator.clone(), s.home.clone(), s.handle.clone());
            tasks.push(tokio::spawn(async move {
                let records = vec![offset("t", (i % 7) as i32, i), offset("u", 0, i)];
                commit(&coordinator, &home, &handle, records, CommitTurn::default()).await
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap(), Ok(()));
        }

        let fsyncs = s
            .metrics
            .fsync_latency
            .with_label_values(&["0"])
            .get_sample_count();
        assert!(
            fsyncs < COMMITS as u64 / 4,
            "{fsyncs} fsyncs for {COMMITS} commits"
        );
        // Every commit is in the log, and the cache holds each partition's last value there.
        let logged = logged(&s.home);
        assert_eq!(logged.len() as i64, 2 * COMMITS);
        let last: std::collections::HashMap<_, _> = logged.into_iter().collect();
        let group = s.handle.group.lock();
        assert_eq!(group.offsets.len(), 8);
        for (key, offset) in &last {
            assert_eq!(group.offsets[key].offset, *offset, "{key:?}");
        }
    }

    #[tokio::test]
    async fn a_connections_commits_keep_their_arrival_order() {
        let dir = tempfile::tempdir().unwrap();
        let s = setup(dir.path());
        // Five commits of one partition arrive in order 1..=5 and take their turns; their tasks
        // start in the opposite order (the runtime may run the last of a burst first).
        let mut last = None;
        let turns: Vec<CommitTurn> = (0..5).map(|_| CommitTurn::after(&mut last)).collect();
        let mut tasks = Vec::new();
        for (i, turn) in turns.into_iter().enumerate().rev() {
            let (coordinator, home, handle) =
                (s.coordinator.clone(), s.home.clone(), s.handle.clone());
            let records = vec![offset("t", 0, i as i64 + 1)];
            tasks.push(tokio::spawn(async move {
                commit(&coordinator, &home, &handle, records, turn).await
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap(), Ok(()));
        }
        let key = ("t".to_string(), 0);
        let order: Vec<i64> = logged(&s.home).into_iter().map(|(_, o)| o).collect();
        assert_eq!(order, vec![1, 2, 3, 4, 5]);
        assert_eq!(s.handle.group.lock().offsets[&key].offset, 5);

        // A turn whose commit ended without writing (its handler dropped it) lets the next go.
        let first = CommitTurn::after(&mut last);
        let second = CommitTurn::after(&mut last);
        drop(first);
        let records = vec![offset("t", 0, 6)];
        assert_eq!(
            commit(&s.coordinator, &s.home, &s.handle, records, second).await,
            Ok(())
        );
        assert_eq!(s.handle.group.lock().offsets[&key].offset, 6);
    }

    #[tokio::test]
    async fn commits_to_a_deleted_group_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let s = setup(dir.path());
        s.handle.group.lock().state = GroupState::Dead;
        let records = vec![offset("t", 0, 5)];
        assert_eq!(
            commit(
                &s.coordinator,
                &s.home,
                &s.handle,
                records,
                CommitTurn::default()
            )
            .await,
            Err(E::CoordinatorNotAvailable.code())
        );
        assert!(s.handle.group.lock().offsets.is_empty());
        assert!(logged(&s.home).is_empty());
    }
}
