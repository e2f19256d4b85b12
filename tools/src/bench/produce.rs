//! Producer threads: one librdkafka `BaseProducer` each, a share of the records and of the rate,
//! send → acknowledgement latency recorded in the delivery callback.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use rdkafka::ClientContext;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;

use super::Cli;
use super::stats::{Counters, SharedHistogram, new_histogram};

/// Counts deliveries and records their latency; the opaque is the send time in µs.
struct Delivery {
    start: Instant,
    counters: Arc<Counters>,
    latency: SharedHistogram,
    record_size: u64,
}

impl ClientContext for Delivery {}

impl ProducerContext for Delivery {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, sent_us: usize) {
        match result {
            Ok(_) => {
                let now = self.start.elapsed().as_micros() as u64;
                let us = now.saturating_sub(sent_us as u64);
                self.latency.record(us);
                self.counters.window.record(us);
                Counters::add(&self.counters.acked, 1);
                Counters::add(&self.counters.acked_bytes, self.record_size);
            }
            Err(_) => Counters::add(&self.counters.failed, 1),
        }
    }
}

/// What the producers measured.
pub struct Produced {
    /// From the start to the last acknowledgement.
    pub elapsed: Duration,
    /// Send → acknowledgement, µs.
    pub latency: Histogram<u64>,
    /// commit_transaction calls, µs (transactional runs).
    pub commit_latency: Histogram<u64>,
}

/// The running producer threads.
pub struct Producers {
    threads: Vec<JoinHandle<anyhow::Result<Produced>>>,
}

impl Producers {
    /// Whether every producer has sent its records and flushed.
    pub fn is_finished(&self) -> bool {
        self.threads.iter().all(|t| t.is_finished())
    }

    /// Waits for the producers and merges what they measured.
    pub fn join(self) -> anyhow::Result<Produced> {
        let mut all = Produced {
            elapsed: Duration::ZERO,
            latency: new_histogram(),
            commit_latency: new_histogram(),
        };
        for t in self.threads {
            let p = t
                .join()
                .map_err(|_| anyhow::anyhow!("a producer thread panicked"))??;
            all.elapsed = all.elapsed.max(p.elapsed);
            all.latency
                .add(&p.latency)
                .expect("histograms share bounds");
            all.commit_latency
                .add(&p.commit_latency)
                .expect("histograms share bounds");
        }
        Ok(all)
    }
}

/// Records for producer `i` of `n` sharing `total` (the first ones take the remainder).
pub fn share(total: u64, n: usize, i: usize) -> u64 {
    let n = n as u64;
    total / n + u64::from((i as u64) < total % n)
}

/// Starts `cli.producers` threads.
pub fn start(
    cli: &Cli,
    counters: Arc<Counters>,
    start: Instant,
    run_id: u64,
) -> anyhow::Result<Producers> {
    if cli.producers == 0 {
        bail!("--producers must be at least 1");
    }
    let mut threads = Vec::new();
    for i in 0..cli.producers {
        let mut config = cli.client_config();
        config
            .set("acks", cli.acks_property())
            .set("compression.type", &cli.compression)
            .set("linger.ms", cli.linger_ms.to_string())
            .set("batch.size", cli.batch_size.to_string())
            .set(
                "enable.idempotence",
                (cli.idempotence || cli.transaction_size > 0).to_string(),
            );
        if cli.transaction_size > 0 {
            config.set("transactional.id", format!("sluice-bench-{run_id:x}-{i}"));
        }
        let ctx = Delivery {
            start,
            counters: counters.clone(),
            latency: SharedHistogram::default(),
            record_size: cli.record_size as u64,
        };
        let producer: BaseProducer<Delivery> = config
            .create_with_context(ctx)
            .context("creating a producer")?;
        let records = share(cli.records, cli.producers, i);
        let rate = cli.rate as f64 / cli.producers as f64;
        let deadline = cli.duration.map(|s| start + Duration::from_secs_f64(s));
        let topic = cli.topic.clone();
        let size = cli.record_size;
        let counters = counters.clone();
        let transaction_size = cli.transaction_size;
        threads.push(std::thread::spawn(move || {
            let load = Load {
                topic: &topic,
                size,
                records,
                rate,
                deadline,
                run_id,
                transaction_size,
            };
            let mut commit_latency = new_histogram();
            // Learn the topic's leaders before the first send: records sent earlier wait in
            // librdkafka until its own metadata request returns, which at the start of a
            // rate-limited run puts tens of milliseconds on the first records' latency.
            producer
                .client()
                .fetch_metadata(Some(&topic), Duration::from_secs(30))
                .with_context(|| format!("metadata of {topic}"))?;
            if transaction_size > 0 {
                producer
                    .init_transactions(TXN_TIMEOUT)
                    .context("initialising transactions")?;
                producer
                    .begin_transaction()
                    .context("beginning a transaction")?;
            }
            produce_loop(&producer, &load, &counters, start, &mut commit_latency)?;
            if transaction_size > 0 {
                let began = Instant::now();
                drain(&producer)?;
                producer
                    .commit_transaction(TXN_TIMEOUT)
                    .context("committing the last transaction")?;
                let _ = commit_latency.record(began.elapsed().as_micros() as u64);
            }
            producer
                .flush(Duration::from_secs(120))
                .context("flushing the producer")?;
            let elapsed = start.elapsed();
            let latency = producer
                .context()
                .latency
                .0
                .lock()
                .expect("histogram lock")
                .clone();
            Ok(Produced {
                elapsed,
                latency,
                commit_latency,
            })
        }));
    }
    Ok(Producers { threads })
}

/// What one producer thread sends.
struct Load<'a> {
    topic: &'a str,
    size: usize,
    records: u64,
    rate: f64,
    deadline: Option<Instant>,
    run_id: u64,
    /// Records per transaction; 0 without transactions.
    transaction_size: u64,
}

/// How long a transaction call may take.
const TXN_TIMEOUT: Duration = Duration::from_secs(60);

/// Waits until every record sent is acknowledged, serving delivery events as they come. The
/// rdkafka crate's `flush` (which `commit_transaction` calls first) polls in 100 ms slices,
/// which would dominate a small transaction's commit latency; the commit latency reported
/// includes this wait.
fn drain(producer: &BaseProducer<Delivery>) -> anyhow::Result<()> {
    let deadline = Instant::now() + TXN_TIMEOUT;
    while producer.in_flight_count() > 0 {
        if Instant::now() >= deadline {
            bail!("records still unacknowledged after {TXN_TIMEOUT:?}");
        }
        producer.poll(Duration::from_millis(1));
    }
    Ok(())
}

/// Serves delivery events for `pause`. librdkafka's poll takes whole milliseconds, so a shorter
/// pause (10,000 records/s leaves 100 µs between sends) would return at once and spin a core,
/// which on a small machine starves the broker being measured: sleep those instead.
fn wait(producer: &BaseProducer<Delivery>, pause: Duration) {
    if pause >= Duration::from_millis(1) {
        producer.poll(pause);
    } else {
        producer.poll(Duration::ZERO);
        std::thread::sleep(pause);
    }
}

fn produce_loop(
    producer: &BaseProducer<Delivery>,
    load: &Load<'_>,
    counters: &Counters,
    start: Instant,
    commit_latency: &mut Histogram<u64>,
) -> anyhow::Result<()> {
    let Load {
        topic,
        size,
        records,
        rate,
        deadline,
        run_id,
        transaction_size,
    } = *load;
    // A fixed, not very compressible pattern; the first 16 bytes carry the send time and the
    // run id (e2e mode reads them).
    let mut payload: Vec<u8> = (0..size)
        .map(|i| (i.wrapping_mul(2654435761) >> 7) as u8)
        .collect();
    if size >= 16 {
        payload[8..16].copy_from_slice(&run_id.to_le_bytes());
    }
    let began = Instant::now();
    for sent in 0..records {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        if rate > 0.0 {
            let due = began + Duration::from_secs_f64(sent as f64 / rate);
            let now = Instant::now();
            if due > now {
                wait(producer, due - now);
            }
        }
        let now_us = start.elapsed().as_micros() as u64;
        if size >= 8 {
            payload[..8].copy_from_slice(&now_us.to_le_bytes());
        }
        let mut record = BaseRecord::<(), [u8], usize>::with_opaque_to(topic, now_us as usize)
            .payload(&payload[..]);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    producer.poll(Duration::from_millis(1));
                }
                Err((e, _)) => bail!("producing to {topic}: {e}"),
            }
        }
        Counters::add(&counters.sent, 1);
        if transaction_size > 0 && (sent + 1) % transaction_size == 0 && sent + 1 < records {
            let began = Instant::now();
            drain(producer)?;
            producer
                .commit_transaction(TXN_TIMEOUT)
                .context("committing a transaction")?;
            let _ = commit_latency.record(began.elapsed().as_micros() as u64);
            producer
                .begin_transaction()
                .context("beginning a transaction")?;
        } else if sent % 64 == 0 {
            producer.poll(Duration::ZERO);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_add_up() {
        for (total, n) in [(10, 3), (1, 4), (100_000, 7), (0, 2)] {
            let sum: u64 = (0..n).map(|i| share(total, n, i)).sum();
            assert_eq!(sum, total);
        }
        assert_eq!(
            [share(10, 3, 0), share(10, 3, 1), share(10, 3, 2)],
            [4, 3, 3]
        );
    }
}
