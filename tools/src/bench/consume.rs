//! Consumer threads: one librdkafka `BaseConsumer` each, partitions assigned by hand (no
//! consumer group), reading from the start (consume) or from the current end (e2e, where the
//! first 8 value bytes carry the send time and give send → consumed latency).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use super::stats::{Counters, new_histogram};
use super::{Cli, Mode};

/// What the consumers measured.
pub struct Consumed {
    /// From the start to the last record received.
    pub elapsed: Duration,
    /// Send → consumed, µs (e2e only).
    pub latency: Histogram<u64>,
}

/// The running consumer threads.
pub struct Consumers {
    threads: Vec<JoinHandle<anyhow::Result<Consumed>>>,
}

impl Consumers {
    /// Whether every consumer stopped (target reached or idle).
    pub fn is_finished(&self) -> bool {
        self.threads.iter().all(|t| t.is_finished())
    }

    /// Waits for the consumers and merges what they measured.
    pub fn join(self) -> anyhow::Result<Consumed> {
        let mut all = Consumed {
            elapsed: Duration::ZERO,
            latency: new_histogram(),
        };
        for t in self.threads {
            let c = t
                .join()
                .map_err(|_| anyhow::anyhow!("a consumer thread panicked"))??;
            all.elapsed = all.elapsed.max(c.elapsed);
            all.latency
                .add(&c.latency)
                .expect("histograms share bounds");
        }
        Ok(all)
    }
}

/// Partitions of consumer `i` of `n`: every n-th partition.
pub fn partitions_of(partitions: i32, n: usize, i: usize) -> Vec<i32> {
    (0..partitions).filter(|p| *p as usize % n == i).collect()
}

/// Starts the consumers; they are positioned before this returns, so producers started
/// afterwards are seen from their first record.
pub fn start(
    cli: &Cli,
    partitions: i32,
    counters: Arc<Counters>,
    done: Arc<AtomicBool>,
    start: Instant,
    run_id: u64,
) -> anyhow::Result<Consumers> {
    if cli.consumers == 0 {
        bail!("--consumers must be at least 1");
    }
    let n = cli.consumers.min(partitions as usize);
    let mut threads = Vec::new();
    for i in 0..n {
        let mut config = cli.client_config();
        config
            // librdkafka refuses assign() without a group id; nothing is committed, so the
            // group only names this run.
            .set("group.id", format!("sluice-bench-{}", std::process::id()))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            // End-of-partition events tell the idle clock the consumer is up and caught up.
            .set("enable.partition.eof", "true")
            .set("auto.offset.reset", "earliest");
        let consumer: BaseConsumer = config.create().context("creating a consumer")?;
        let mut tpl = TopicPartitionList::new();
        for p in partitions_of(partitions, n, i) {
            let offset = match cli.mode {
                Mode::E2e => {
                    let (_, high) = consumer
                        .fetch_watermarks(&cli.topic, p, Duration::from_secs(30))
                        .with_context(|| format!("end offset of {}/{p}", cli.topic))?;
                    Offset::Offset(high)
                }
                _ => Offset::Beginning,
            };
            tpl.add_partition_offset(&cli.topic, p, offset)?;
        }
        consumer.assign(&tpl).context("assigning partitions")?;
        let (mode, target) = (cli.mode, cli.records);
        let idle = Duration::from_millis(cli.idle_timeout_ms);
        let (counters, done) = (counters.clone(), done.clone());
        threads.push(std::thread::spawn(move || {
            consume_loop(
                &consumer,
                Stop {
                    mode,
                    target,
                    idle,
                    run_id,
                },
                &counters,
                &done,
                start,
            )
        }));
    }
    Ok(Consumers { threads })
}

/// How long a consumer may take to fetch anything at all before it counts as idle.
const STARTUP: Duration = Duration::from_secs(30);

/// When a consumer thread stops, and which records it counts.
struct Stop {
    mode: Mode,
    target: u64,
    idle: Duration,
    run_id: u64,
}

fn consume_loop(
    consumer: &BaseConsumer,
    stop: Stop,
    counters: &Counters,
    done: &AtomicBool,
    start: Instant,
) -> anyhow::Result<Consumed> {
    let Stop {
        mode,
        target,
        idle,
        run_id,
    } = stop;
    let mut latency = new_histogram();
    let mut last = Instant::now();
    // The idle clock starts once the consumer has fetched something (a record, or the end of a
    // partition): joining, finding the coordinator and the first fetch may take longer than a
    // short idle timeout.
    let mut active = false;
    let mut last_record = Duration::ZERO;
    let mut warned = false;
    loop {
        let reached = match mode {
            Mode::E2e => done.load(Ordering::Relaxed),
            _ => Counters::get(&counters.consumed) >= target,
        };
        let allowed = if active { idle } else { idle.max(STARTUP) };
        if reached || last.elapsed() >= allowed {
            break;
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                last = Instant::now();
                active = true;
                let now = start.elapsed();
                let payload = m.payload().unwrap_or_default();
                if mode == Mode::E2e {
                    match send_time_and_run(payload) {
                        Some((sent, id)) if id == run_id => {
                            let us = now.as_micros() as u64;
                            let us = us.saturating_sub(sent).max(1);
                            latency.saturating_record(us);
                            counters.window.record(us);
                        }
                        _ => continue,
                    }
                }
                last_record = now;
                Counters::add(&counters.consumed, 1);
                Counters::add(&counters.consumed_bytes, payload.len() as u64);
            }
            Some(Err(KafkaError::PartitionEOF(_))) => {
                if !active {
                    last = Instant::now();
                    active = true;
                }
            }
            // librdkafka retries on its own; say it once per consumer.
            Some(Err(e)) if !warned => {
                eprintln!("warning: consumer: {e}");
                warned = true;
            }
            Some(Err(_)) | None => {}
        }
    }
    Ok(Consumed {
        elapsed: last_record,
        latency,
    })
}

/// The send time (µs) and run id at the start of an e2e value.
fn send_time_and_run(payload: &[u8]) -> Option<(u64, u64)> {
    let sent = u64::from_le_bytes(payload.get(..8)?.try_into().ok()?);
    let run = u64::from_le_bytes(payload.get(8..16)?.try_into().ok()?);
    Some((sent, run))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_are_dealt_round_robin() {
        assert_eq!(partitions_of(5, 2, 0), vec![0, 2, 4]);
        assert_eq!(partitions_of(5, 2, 1), vec![1, 3]);
        assert_eq!(partitions_of(1, 1, 0), vec![0]);
    }

    #[test]
    fn e2e_values_carry_time_and_run() {
        let mut v = 42u64.to_le_bytes().to_vec();
        v.extend_from_slice(&7u64.to_le_bytes());
        v.extend_from_slice(b"rest");
        assert_eq!(send_time_and_run(&v), Some((42, 7)));
        assert_eq!(send_time_and_run(&v[..12]), None);
    }
}
