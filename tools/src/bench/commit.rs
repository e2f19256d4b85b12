//! Commit mode: consumer threads committing explicit offsets (asynchronous commits, a bounded
//! number in flight per consumer), each in its own group or all in one. Every commit carries
//! its sequence number as the offset, so the commit callback finds its send time; commits/s and
//! send → callback latency are what the run reports.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use rdkafka::bindings as rdsys;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use super::Cli;
use super::stats::{Counters, SharedHistogram, new_histogram};

/// How long the first commit of each consumer (finding the coordinator, creating the group) may
/// take; it is not measured.
const WARM_UP_TIMEOUT: Duration = Duration::from_secs(30);

/// How long commits still in flight at the end may take to be answered.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// One consumer's commit callback: counts answers and records their latency.
struct Commits {
    /// Time zero of the measurement; `None` during the warm-up commit.
    start: Mutex<Option<Instant>>,
    counters: Arc<Counters>,
    latency: SharedHistogram,
    /// Commit sequence number (the committed offset) → send time, µs since `start`.
    sent_at: Mutex<HashMap<i64, u64>>,
    in_flight: AtomicU64,
    /// When the last answer arrived, µs since `start`.
    last_answer_us: AtomicU64,
    /// Answers to the warm-up commit.
    warm_up_answers: AtomicU64,
    /// The first error seen, for the run's message.
    first_error: Mutex<Option<String>>,
}

impl ClientContext for Commits {}

impl ConsumerContext for Commits {
    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        let error = match &result {
            Err(e) => Some(e.to_string()),
            Ok(()) => offsets
                .elements()
                .iter()
                .find_map(|e| e.error().err().map(|e| e.to_string())),
        };
        let Some(start) = *self.start.lock().expect("start lock") else {
            self.warm_up_answers.fetch_add(1, Ordering::Relaxed);
            if let Some(e) = error {
                self.first_error
                    .lock()
                    .expect("error lock")
                    .get_or_insert(e);
            }
            return;
        };
        let now = start.elapsed().as_micros() as u64;
        let sequence = offsets.elements().first().and_then(|e| match e.offset() {
            Offset::Offset(o) => Some(o),
            _ => None,
        });
        let sent = sequence.and_then(|s| self.sent_at.lock().expect("sent lock").remove(&s));
        match error {
            None => {
                if let Some(sent) = sent {
                    let us = now.saturating_sub(sent);
                    self.latency.record(us);
                    self.counters.window.record(us);
                }
                Counters::add(&self.counters.acked, 1);
            }
            Some(e) => {
                Counters::add(&self.counters.failed, 1);
                self.first_error
                    .lock()
                    .expect("error lock")
                    .get_or_insert(e);
            }
        }
        self.last_answer_us.fetch_max(now, Ordering::Relaxed);
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Asynchronous commits whose results come back through `poll`. rust-rdkafka 0.39's
/// `commit(.., CommitMode::Async)` hands librdkafka neither a reply queue nor a callback, so
/// librdkafka drops the result and `commit_callback` never runs (fede1024/rust-rdkafka#856).
/// `rd_kafka_commit_queue` with the consumer's own queue returns it as an OFFSET_COMMIT event,
/// which `BaseConsumer::poll` passes to `ConsumerContext::commit_callback`.
struct CommitQueue<'a> {
    consumer: &'a BaseConsumer<Commits>,
    /// A reference to the consumer queue, released on drop (before the consumer, which it
    /// borrows).
    queue: std::ptr::NonNull<rdsys::rd_kafka_queue_t>,
}

impl<'a> CommitQueue<'a> {
    fn of(consumer: &'a BaseConsumer<Commits>) -> CommitQueue<'a> {
        // SAFETY: the client pointer is valid while `consumer` lives; the call returns a new
        // reference to the queue (or null without a group id, which every committer has).
        let queue = unsafe { rdsys::rd_kafka_queue_get_consumer(consumer.client().native_ptr()) };
        let queue = std::ptr::NonNull::new(queue).expect("a consumer with group.id has a queue");
        CommitQueue { consumer, queue }
    }

    /// Commits `offsets`; the result arrives on a later `poll`.
    fn commit(&self, offsets: &TopicPartitionList) -> KafkaResult<()> {
        // SAFETY: all three pointers are valid for the call; librdkafka copies `offsets`.
        let err = unsafe {
            rdsys::rd_kafka_commit_queue(
                self.consumer.client().native_ptr(),
                offsets.ptr(),
                self.queue.as_ptr(),
                None,
                std::ptr::null_mut(),
            )
        };
        if err == rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
            Ok(())
        } else {
            Err(KafkaError::ConsumerCommit(err.into()))
        }
    }
}

impl Drop for CommitQueue<'_> {
    fn drop(&mut self) {
        // SAFETY: the reference taken in `of`, released once.
        unsafe { rdsys::rd_kafka_queue_destroy(self.queue.as_ptr()) };
    }
}

/// What the committing consumers measured.
pub struct Committed {
    /// From the start to the last answer.
    pub elapsed: Duration,
    /// Commit → callback, µs.
    pub latency: Histogram<u64>,
    /// The first error a commit got, if any.
    pub first_error: Option<String>,
}

/// The running committer threads.
pub struct Committers {
    threads: Vec<JoinHandle<anyhow::Result<Committed>>>,
}

impl Committers {
    /// Whether every committer stopped.
    pub fn is_finished(&self) -> bool {
        self.threads.iter().all(|t| t.is_finished())
    }

    /// Waits for the committers and merges what they measured.
    pub fn join(self) -> anyhow::Result<Committed> {
        let mut all = Committed {
            elapsed: Duration::ZERO,
            latency: new_histogram(),
            first_error: None,
        };
        for t in self.threads {
            let c = t
                .join()
                .map_err(|_| anyhow::anyhow!("a committer thread panicked"))??;
            all.elapsed = all.elapsed.max(c.elapsed);
            all.latency
                .add(&c.latency)
                .expect("histograms share bounds");
            all.first_error = all.first_error.or(c.first_error);
        }
        Ok(all)
    }
}

/// The group of consumer `i`: one per consumer, or one for all.
pub fn group_of(run_id: u64, shared: bool, i: usize) -> String {
    if shared {
        format!("sluice-bench-commit-{run_id:x}")
    } else {
        format!("sluice-bench-commit-{run_id:x}-{i}")
    }
}

/// The partitions commit `sequence` of consumer `i` covers: `per_commit` consecutive ones
/// (modulo the partition count), moving on with every commit.
pub fn partitions_of_commit(
    partitions: i32,
    per_commit: i32,
    i: usize,
    sequence: u64,
) -> impl Iterator<Item = i32> {
    let first = (i as u64 + sequence * per_commit as u64) % partitions as u64;
    (0..per_commit.min(partitions)).map(move |k| ((first + k as u64) % partitions as u64) as i32)
}

/// Starts `cli.consumers` committer threads. Each first commits once unmeasured (the client
/// finds the coordinator); all then start together at the returned instant.
pub fn start(
    cli: &Cli,
    partitions: i32,
    counters: Arc<Counters>,
    run_id: u64,
) -> anyhow::Result<(Committers, Instant)> {
    if cli.consumers == 0 {
        bail!("--consumers must be at least 1");
    }
    if cli.in_flight == 0 {
        bail!("--in-flight must be at least 1");
    }
    if cli.commit_partitions < 1 {
        bail!("--commit-partitions must be at least 1");
    }
    let n = cli.consumers;
    let ready = Arc::new(Barrier::new(n + 1));
    let go = Arc::new(Mutex::new(None::<Instant>));
    let go_signal = Arc::new(Barrier::new(n + 1));
    let mut threads = Vec::new();
    for i in 0..n {
        let mut config = cli.client_config();
        config
            .set("group.id", group_of(run_id, cli.shared_group, i))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false");
        let context = Commits {
            start: Mutex::new(None),
            counters: counters.clone(),
            latency: SharedHistogram::default(),
            sent_at: Mutex::new(HashMap::new()),
            in_flight: AtomicU64::new(0),
            last_answer_us: AtomicU64::new(0),
            warm_up_answers: AtomicU64::new(0),
            first_error: Mutex::new(None),
        };
        let consumer: BaseConsumer<Commits> = config
            .create_with_context(context)
            .context("creating a consumer")?;
        let load = Load {
            topic: cli.topic.clone(),
            partitions,
            per_commit: cli.commit_partitions,
            index: i,
            commits: super::produce::share(cli.records, n, i),
            in_flight: cli.in_flight as u64,
            duration: cli.duration.map(Duration::from_secs_f64),
        };
        let (ready, go, go_signal) = (ready.clone(), go.clone(), go_signal.clone());
        threads.push(std::thread::spawn(move || {
            let warmed = warm_up(&consumer, &load);
            ready.wait();
            go_signal.wait();
            warmed?;
            let start = go.lock().expect("go lock").expect("set before the signal");
            commit_loop(&consumer, &load, start)
        }));
    }
    ready.wait();
    let start = Instant::now();
    *go.lock().expect("go lock") = Some(start);
    go_signal.wait();
    Ok((Committers { threads }, start))
}

/// What one committer thread commits.
struct Load {
    topic: String,
    partitions: i32,
    per_commit: i32,
    index: usize,
    /// Commits to send.
    commits: u64,
    in_flight: u64,
    duration: Option<Duration>,
}

impl Load {
    fn offsets(&self, sequence: u64) -> anyhow::Result<TopicPartitionList> {
        let mut tpl = TopicPartitionList::new();
        for p in partitions_of_commit(self.partitions, self.per_commit, self.index, sequence) {
            tpl.add_partition_offset(&self.topic, p, Offset::Offset(sequence as i64))?;
        }
        Ok(tpl)
    }
}

/// One unmeasured commit, waited for.
fn warm_up(consumer: &BaseConsumer<Commits>, load: &Load) -> anyhow::Result<()> {
    let ctx = consumer.context();
    CommitQueue::of(consumer)
        .commit(&load.offsets(0)?)
        .context("committing")?;
    let deadline = Instant::now() + WARM_UP_TIMEOUT;
    while ctx.warm_up_answers.load(Ordering::Relaxed) == 0 {
        if Instant::now() >= deadline {
            bail!("the first commit was not answered within {WARM_UP_TIMEOUT:?}");
        }
        consumer.poll(Duration::from_millis(100));
    }
    if let Some(e) = ctx.first_error.lock().expect("error lock").take() {
        bail!("the first commit failed: {e}");
    }
    Ok(())
}

fn commit_loop(
    consumer: &BaseConsumer<Commits>,
    load: &Load,
    start: Instant,
) -> anyhow::Result<Committed> {
    let ctx = consumer.context();
    let queue = CommitQueue::of(consumer);
    *ctx.start.lock().expect("start lock") = Some(start);
    let deadline = load.duration.map(|d| start + d);
    // Sequence numbers start at 1: offset 0 was the warm-up.
    for sequence in 1..=load.commits {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        while ctx.in_flight.load(Ordering::Relaxed) >= load.in_flight {
            consumer.poll(Duration::from_millis(100));
        }
        let tpl = load.offsets(sequence)?;
        ctx.sent_at
            .lock()
            .expect("sent lock")
            .insert(sequence as i64, start.elapsed().as_micros() as u64);
        ctx.in_flight.fetch_add(1, Ordering::Relaxed);
        queue.commit(&tpl).context("committing")?;
        Counters::add(&ctx.counters.sent, 1);
        consumer.poll(Duration::ZERO);
    }
    let drain_until = Instant::now() + DRAIN_TIMEOUT;
    while ctx.in_flight.load(Ordering::Relaxed) > 0 && Instant::now() < drain_until {
        consumer.poll(Duration::from_millis(100));
    }
    let latency = ctx.latency.0.lock().expect("histogram lock").clone();
    let first_error = ctx.first_error.lock().expect("error lock").take();
    Ok(Committed {
        elapsed: Duration::from_micros(ctx.last_answer_us.load(Ordering::Relaxed)),
        latency,
        first_error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_walk_over_the_partitions() {
        let of = |p, k, i, s| partitions_of_commit(p, k, i, s).collect::<Vec<_>>();
        assert_eq!(of(16, 1, 0, 0), vec![0]);
        assert_eq!(of(16, 1, 0, 1), vec![1]);
        assert_eq!(of(16, 1, 3, 15), vec![2]);
        assert_eq!(of(16, 4, 1, 3), vec![13, 14, 15, 0]);
        assert_eq!(of(2, 4, 0, 0), vec![0, 1], "never more than the partitions");
    }

    #[test]
    fn groups_are_per_consumer_or_shared() {
        assert_eq!(group_of(0xab, false, 2), "sluice-bench-commit-ab-2");
        assert_eq!(group_of(0xab, true, 2), "sluice-bench-commit-ab");
    }
}
