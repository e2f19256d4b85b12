//! Measurements of a bench run: shared counters, latency histograms (hdrhistogram, in
//! microseconds), a per-second timeline, and the summary printed at the end.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::table::Table;

/// Counters every producer and consumer thread adds to.
#[derive(Debug, Default)]
pub struct Counters {
    /// Records handed to the client.
    pub sent: AtomicU64,
    /// Records the broker acknowledged.
    pub acked: AtomicU64,
    /// Records that failed to be delivered.
    pub failed: AtomicU64,
    /// Payload bytes acknowledged.
    pub acked_bytes: AtomicU64,
    /// Records consumed.
    pub consumed: AtomicU64,
    /// Payload bytes consumed.
    pub consumed_bytes: AtomicU64,
    /// Latencies of the current timeline interval (the timeline empties it every second).
    pub window: SharedHistogram,
}

impl Counters {
    /// Adds `n` to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Reads a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// A latency histogram in microseconds, up to one hour, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

/// A histogram shared between a client's callbacks and the thread that merges them.
#[derive(Debug)]
pub struct SharedHistogram(pub Mutex<Histogram<u64>>);

impl Default for SharedHistogram {
    fn default() -> Self {
        SharedHistogram(Mutex::new(new_histogram()))
    }
}

impl SharedHistogram {
    /// Records one latency.
    pub fn record(&self, micros: u64) {
        self.0
            .lock()
            .expect("histogram lock")
            .saturating_record(micros.max(1));
    }

    /// Percentiles of what was recorded since the last call, then forgets it.
    pub fn take(&self) -> Option<Latency> {
        let mut h = self.0.lock().expect("histogram lock");
        let l = Latency::of(&h);
        h.reset();
        l
    }
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Latency {
    pub count: u64,
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
}

impl Latency {
    /// Percentiles of a histogram of microseconds; `None` when it is empty.
    pub fn of(h: &Histogram<u64>) -> Option<Latency> {
        if h.is_empty() {
            return None;
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Some(Latency {
            count: h.len(),
            p50: ms(h.value_at_quantile(0.50)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
            mean: (h.mean() / 10.0).round() / 100.0,
        })
    }
}

/// One second of the run.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// Seconds since the start.
    pub t: f64,
    /// Records acknowledged (produce) or consumed (consume, e2e) during this second.
    pub records: u64,
    /// Median latency during this second, ms (none in consume mode).
    pub p50_ms: Option<f64>,
    /// 99th percentile latency during this second, ms.
    pub p99_ms: Option<f64>,
}

/// Collects one sample per interval from the counters.
pub struct Timeline {
    start: Instant,
    last: u64,
    samples: Vec<Sample>,
}

impl Timeline {
    /// A timeline starting now.
    pub fn new(start: Instant) -> Self {
        Timeline {
            start,
            last: 0,
            samples: Vec::new(),
        }
    }

    /// Adds a sample with the running total `total` and the interval's latencies.
    pub fn sample(&mut self, total: u64, window: Option<Latency>) {
        let t = (self.start.elapsed().as_secs_f64() * 10.0).round() / 10.0;
        self.samples.push(Sample {
            t,
            records: total - self.last,
            p50_ms: window.as_ref().map(|l| l.p50),
            p99_ms: window.as_ref().map(|l| l.p99),
        });
        self.last = total;
    }

    /// The samples taken.
    pub fn into_samples(self) -> Vec<Sample> {
        self.samples
    }
}

/// What a run measured, printed at the end (a table, or JSON with `--json`).
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub mode: String,
    /// The client library that generated the load (`librdkafka 2.12.1`).
    pub client: String,
    pub bootstrap_server: String,
    pub topic: String,
    pub partitions: i32,
    pub record_size: usize,
    pub acks: String,
    pub compression: String,
    pub producers: usize,
    pub consumers: usize,
    /// Commit mode: the groups committed for, and commits in flight per consumer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub groups: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub in_flight: Option<usize>,
    /// Records (commit mode: offset commits) handed to the client, acknowledged, failed.
    pub records_sent: u64,
    pub records_acked: u64,
    pub records_failed: u64,
    pub records_consumed: u64,
    pub elapsed_s: f64,
    pub records_per_sec: f64,
    pub mib_per_sec: f64,
    /// Produce: send → acknowledgement. E2E: send → consumed. Consume: none.
    pub latency_ms: Option<Latency>,
    /// Transactional runs: commit_transaction's latency.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit_latency_ms: Option<Latency>,
    pub timeline: Vec<Sample>,
}

/// Records and MiB per second for `records` of `bytes` over `elapsed`.
pub fn rates(records: u64, bytes: u64, elapsed: Duration) -> (f64, f64) {
    let s = elapsed.as_secs_f64().max(1e-9);
    let round = |x: f64| (x * 100.0).round() / 100.0;
    (
        round(records as f64 / s),
        round(bytes as f64 / s / (1024.0 * 1024.0)),
    )
}

impl Summary {
    /// The summary as an aligned two-column table.
    pub fn render(&self) -> String {
        let mut t = Table::new(&["METRIC", "VALUE"]);
        t.row(["mode", &self.mode]);
        t.row(["client", &self.client]);
        t.row([
            "topic",
            &format!("{} ({} partitions)", self.topic, self.partitions),
        ]);
        t.row(["record size", &format!("{} B", self.record_size)]);
        t.row([
            "acks / compression",
            &format!("{} / {}", self.acks, self.compression),
        ]);
        t.row([
            "producers / consumers",
            &format!("{} / {}", self.producers, self.consumers),
        ]);
        if self.mode == "commit" {
            t.row([
                "groups / in flight",
                &format!(
                    "{} / {} per consumer",
                    self.groups.unwrap_or(0),
                    self.in_flight.unwrap_or(0)
                ),
            ]);
            t.row(["commits sent", &self.records_sent.to_string()]);
            t.row(["commits answered", &self.records_acked.to_string()]);
            t.row(["commits failed", &self.records_failed.to_string()]);
        } else if self.mode != "consume" {
            t.row(["records sent", &self.records_sent.to_string()]);
            t.row(["records acked", &self.records_acked.to_string()]);
            t.row(["records failed", &self.records_failed.to_string()]);
        }
        if self.mode != "produce" && self.mode != "commit" {
            t.row(["records consumed", &self.records_consumed.to_string()]);
        }
        t.row(["elapsed", &format!("{:.2} s", self.elapsed_s)]);
        t.row([
            "throughput",
            &if self.mode == "commit" {
                format!("{:.0} commits/s", self.records_per_sec)
            } else {
                format!(
                    "{:.0} records/s, {:.2} MiB/s",
                    self.records_per_sec, self.mib_per_sec
                )
            },
        ]);
        if let Some(l) = &self.latency_ms {
            t.row([
                "latency ms",
                &format!(
                    "p50 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}",
                    l.p50, l.p99, l.p999, l.max
                ),
            ]);
        }
        if let Some(l) = &self.commit_latency_ms {
            t.row([
                "commit latency ms",
                &format!(
                    "p50 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}",
                    l.p50, l.p99, l.p999, l.max
                ),
            ]);
        }
        t.render()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_in_milliseconds() {
        let mut h = new_histogram();
        for us in 1..=1000u64 {
            h.record(us * 1000).unwrap();
        }
        let l = Latency::of(&h).unwrap();
        assert_eq!(l.count, 1000);
        assert!((l.p50 - 500.0).abs() < 1.0, "{l:?}");
        assert!((l.p99 - 990.0).abs() < 1.0, "{l:?}");
        assert!((l.max - 1000.0).abs() < 1.0, "{l:?}");
        assert!(Latency::of(&new_histogram()).is_none());
    }

    #[test]
    fn rates_per_second() {
        assert_eq!(
            rates(1000, 1024 * 1024, Duration::from_secs(2)),
            (500.0, 0.5)
        );
    }

    #[test]
    fn timeline_samples_are_deltas() {
        let mut t = Timeline::new(Instant::now());
        let window = SharedHistogram::default();
        window.record(2000);
        t.sample(10, window.take());
        t.sample(25, window.take());
        let s = t.into_samples();
        assert_eq!(
            s.iter().map(|x| x.records).collect::<Vec<_>>(),
            vec![10, 15]
        );
        assert_eq!(s[0].p99_ms, Some(2.0));
        assert_eq!(s[1].p99_ms, None, "the window empties at every sample");
    }
}
