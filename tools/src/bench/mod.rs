//! `sluice-bench`: the command line, topic set-up and the run loop (progress bar, timeline,
//! summary) around the librdkafka producers, consumers and committers in `produce`, `consume`
//! and `commit`.

mod chart;
mod commit;
mod consume;
mod produce;
mod stats;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::types::RDKafkaErrorCode;

pub use stats::{Counters, Latency, Summary};

use crate::args::{Acks, key_value};

/// Load generator for Sluice or any Kafka-compatible broker, driving librdkafka.
#[derive(Debug, Clone, Parser)]
#[command(name = "sluice-bench", version)]
pub struct Cli {
    /// What to measure.
    #[arg(value_enum)]
    pub mode: Mode,
    /// Broker to bootstrap from (HOST:PORT).
    #[arg(
        short = 'b',
        long = "bootstrap-server",
        default_value = "localhost:9092"
    )]
    pub bootstrap_server: String,
    /// Topic (created with --partitions when missing).
    #[arg(short, long, default_value = "sluice-bench")]
    pub topic: String,
    /// Partition count for a topic the bench creates.
    #[arg(short, long, default_value_t = 1)]
    pub partitions: i32,
    /// Records to produce (produce, e2e), to read (consume), or offset commits to send
    /// (commit).
    #[arg(short = 'n', long, default_value_t = 100_000)]
    pub records: u64,
    /// Stop producing (or committing) after this many seconds even if --records are not all
    /// sent.
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,
    /// Value size in bytes.
    #[arg(short = 's', long, default_value_t = 1024)]
    pub record_size: usize,
    /// Records per second over all producers (0: as fast as possible).
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// 0, 1 or all.
    #[arg(long, default_value = "1")]
    pub acks: Acks,
    /// none, gzip, snappy, lz4 or zstd.
    #[arg(long, default_value = "none", value_parser = ["none", "gzip", "snappy", "lz4", "zstd"])]
    pub compression: String,
    /// Producer linger.ms.
    #[arg(long, default_value_t = 5)]
    pub linger_ms: u64,
    /// Producer batch.size in bytes.
    #[arg(long, default_value_t = 1_000_000)]
    pub batch_size: u64,
    /// Idempotent producers (enable.idempotence=true; implies acks=all).
    #[arg(long)]
    pub idempotence: bool,
    /// Transactional producers committing every N records (0: no transactions); commit
    /// latency is reported separately. Implies --idempotence.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub transaction_size: u64,
    /// Producer threads, each with its own client.
    #[arg(long, default_value_t = 1)]
    pub producers: usize,
    /// Consumer threads, each with its own client and a share of the partitions (consume,
    /// e2e) or of the commits (commit).
    #[arg(long, default_value_t = 1)]
    pub consumers: usize,
    /// Commit mode: all consumers commit for one group (default: a group each).
    #[arg(long)]
    pub shared_group: bool,
    /// Commit mode: asynchronous commits each consumer keeps in flight.
    #[arg(long, default_value_t = 64, value_name = "N")]
    pub in_flight: usize,
    /// Commit mode: partitions in each commit.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub commit_partitions: i32,
    /// Give up when no record arrives for this long (consume, e2e).
    #[arg(long, default_value_t = 10_000, value_name = "MS")]
    pub idle_timeout_ms: u64,
    /// Extra librdkafka property for every client, repeatable (`-X fetch.wait.max.ms=10`).
    #[arg(short = 'X', value_name = "KEY=VALUE", value_parser = key_value)]
    pub properties: Vec<(String, String)>,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
    /// No progress bar.
    #[arg(long)]
    pub no_progress: bool,
    /// Also draw throughput and latency over time into this SVG file.
    #[arg(long, value_name = "PATH")]
    pub svg: Option<std::path::PathBuf>,
}

/// What a run measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Produce --records and measure send → acknowledgement latency.
    Produce,
    /// Read --records from the start of the topic and measure throughput.
    Consume,
    /// Produce and consume at once; latency is send → consumed.
    E2e,
    /// Commit explicit offsets (asynchronously) and measure commit → callback latency.
    Commit,
}

impl Cli {
    /// The producers' `acks`: idempotent and transactional producers need `all`.
    pub fn acks_property(&self) -> &'static str {
        if self.idempotence || self.transaction_size > 0 {
            "all"
        } else {
            self.acks.property()
        }
    }

    /// The base librdkafka config every client of the run shares.
    pub fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap_server)
            .set("client.id", "sluice-bench")
            .set("log_level", "3");
        for (k, v) in &self.properties {
            c.set(k, v);
        }
        c
    }
}

/// Creates the topic when it does not exist; returns its partition count.
fn ensure_topic(cli: &Cli) -> anyhow::Result<i32> {
    let probe: BaseConsumer = cli
        .client_config()
        .create()
        .context("creating a metadata client")?;
    // Fail fast when nothing answers, instead of at the admin request's timeout.
    probe
        .fetch_metadata(None, Duration::from_secs(10))
        .with_context(|| {
            format!(
                "no broker answered at {} within 10 s; check the address (--bootstrap-server)",
                cli.bootstrap_server
            )
        })?;
    let admin: AdminClient<DefaultClientContext> = cli
        .client_config()
        .create()
        .context("creating the admin client")?;
    let topic = NewTopic::new(&cli.topic, cli.partitions, TopicReplication::Fixed(1));
    let opts = AdminOptions::new()
        .operation_timeout(Some(Duration::from_secs(15)))
        .request_timeout(Some(Duration::from_secs(20)));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let results = rt
        .block_on(admin.create_topics([&topic], &opts))
        .with_context(|| format!("creating topic {} on {}", cli.topic, cli.bootstrap_server))?;
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, code)) => bail!("creating topic {t}: {code}"),
        }
    }
    let md = probe
        .fetch_metadata(Some(&cli.topic), Duration::from_secs(15))
        .with_context(|| format!("metadata of {} from {}", cli.topic, cli.bootstrap_server))?;
    let n = md.topics().first().map_or(0, |t| t.partitions().len()) as i32;
    if n == 0 {
        bail!(
            "topic {} has no partitions on {}",
            cli.topic,
            cli.bootstrap_server
        );
    }
    Ok(n)
}

/// Runs the benchmark and returns its summary.
pub fn run(cli: &Cli) -> anyhow::Result<Summary> {
    if cli.record_size < 16 && cli.mode == Mode::E2e {
        bail!(
            "--record-size must be at least 16 in e2e mode (send time and run id travel in the value)"
        );
    }
    let partitions = ensure_topic(cli)?;
    let counters = Arc::new(Counters::default());
    let done = Arc::new(AtomicBool::new(false));
    // Marks this run's records, so e2e consumers skip records of earlier runs.
    let run_id = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
        ^ u64::from(std::process::id()) << 32;
    if cli.mode == Mode::Commit {
        return run_commits(cli, partitions, counters, run_id);
    }
    let start = Instant::now();
    let bar = progress_bar(cli);

    let producer_cli = cli.clone();
    let consumers = match cli.mode {
        Mode::Produce | Mode::Commit => None,
        Mode::Consume | Mode::E2e => Some(consume::start(
            cli,
            partitions,
            counters.clone(),
            done.clone(),
            start,
            run_id,
        )?),
    };
    let producers = match cli.mode {
        Mode::Consume | Mode::Commit => None,
        Mode::Produce | Mode::E2e => Some(produce::start(
            &producer_cli,
            counters.clone(),
            start,
            run_id,
        )?),
    };

    // One timeline sample per second; the bar shows acknowledged or consumed records.
    let measured = |c: &Counters| match cli.mode {
        Mode::Produce | Mode::Commit => Counters::get(&c.acked),
        _ => Counters::get(&c.consumed),
    };
    let mut timeline = stats::Timeline::new(start);
    let mut next_sample = start + Duration::from_secs(1);
    let finished = |c: &Counters| match cli.mode {
        Mode::Produce => producers.as_ref().is_some_and(|p| p.is_finished()),
        Mode::Consume => consumers.as_ref().is_some_and(|h| h.is_finished()),
        Mode::Commit => true,
        Mode::E2e => {
            producers.as_ref().is_some_and(|p| p.is_finished())
                && (Counters::get(&c.consumed) >= Counters::get(&c.acked)
                    || consumers.as_ref().is_some_and(|h| h.is_finished()))
        }
    };
    while !finished(&counters) {
        std::thread::sleep(Duration::from_millis(50));
        bar.set_position(measured(&counters));
        if Instant::now() >= next_sample {
            timeline.sample(measured(&counters), counters.window.take());
            next_sample += Duration::from_secs(1);
        }
    }
    let produced = producers.map(|p| p.join()).transpose()?;
    done.store(true, Ordering::Relaxed);
    let consumed = consumers.map(|c| c.join()).transpose()?;
    timeline.sample(measured(&counters), counters.window.take());
    bar.finish_and_clear();

    let c = &counters;
    let commit_latency = produced
        .as_ref()
        .and_then(|p| Latency::of(&p.commit_latency));
    let (elapsed, latency, bytes, records) = match cli.mode {
        Mode::Produce | Mode::Commit => {
            let p = produced.expect("produce mode has producers");
            (
                p.elapsed,
                Latency::of(&p.latency),
                Counters::get(&c.acked_bytes),
                Counters::get(&c.acked),
            )
        }
        Mode::Consume => {
            let r = consumed.expect("consume mode has consumers");
            (
                r.elapsed,
                None,
                Counters::get(&c.consumed_bytes),
                Counters::get(&c.consumed),
            )
        }
        Mode::E2e => {
            let r = consumed.expect("e2e mode has consumers");
            (
                r.elapsed,
                Latency::of(&r.latency),
                Counters::get(&c.consumed_bytes),
                Counters::get(&c.consumed),
            )
        }
    };
    let (records_per_sec, mib_per_sec) = stats::rates(records, bytes, elapsed);
    Ok(Summary {
        mode: format!("{:?}", cli.mode).to_lowercase(),
        client: format!("librdkafka {}", rdkafka::util::get_rdkafka_version().1),
        bootstrap_server: cli.bootstrap_server.clone(),
        topic: cli.topic.clone(),
        partitions,
        record_size: cli.record_size,
        acks: cli.acks_property().to_owned(),
        compression: cli.compression.clone(),
        producers: if cli.mode == Mode::Consume {
            0
        } else {
            cli.producers
        },
        // At most one consumer per partition runs.
        consumers: if cli.mode == Mode::Produce {
            0
        } else {
            cli.consumers.min(partitions as usize)
        },
        groups: None,
        in_flight: None,
        records_sent: Counters::get(&c.sent),
        records_acked: Counters::get(&c.acked),
        records_failed: Counters::get(&c.failed),
        records_consumed: Counters::get(&c.consumed),
        elapsed_s: (elapsed.as_secs_f64() * 1000.0).round() / 1000.0,
        records_per_sec,
        mib_per_sec,
        latency_ms: latency,
        commit_latency_ms: commit_latency,
        timeline: timeline.into_samples(),
    })
}

/// Commit mode: committers instead of producers and consumers; commits count as records.
fn run_commits(
    cli: &Cli,
    partitions: i32,
    counters: Arc<Counters>,
    run_id: u64,
) -> anyhow::Result<Summary> {
    let bar = progress_bar(cli);
    let (committers, start) = commit::start(cli, partitions, counters.clone(), run_id)?;
    let mut timeline = stats::Timeline::new(start);
    let mut next_sample = start + Duration::from_secs(1);
    while !committers.is_finished() {
        std::thread::sleep(Duration::from_millis(50));
        bar.set_position(Counters::get(&counters.acked));
        if Instant::now() >= next_sample {
            timeline.sample(Counters::get(&counters.acked), counters.window.take());
            next_sample += Duration::from_secs(1);
        }
    }
    let committed = committers.join()?;
    timeline.sample(Counters::get(&counters.acked), counters.window.take());
    bar.finish_and_clear();
    if let Some(e) = &committed.first_error {
        eprintln!("warning: a commit failed: {e}");
    }
    let c = &counters;
    let commits = Counters::get(&c.acked);
    let (commits_per_sec, _) = stats::rates(commits, 0, committed.elapsed);
    Ok(Summary {
        mode: "commit".to_owned(),
        client: format!("librdkafka {}", rdkafka::util::get_rdkafka_version().1),
        bootstrap_server: cli.bootstrap_server.clone(),
        topic: cli.topic.clone(),
        partitions,
        record_size: 0,
        acks: "all".to_owned(),
        compression: "none".to_owned(),
        producers: 0,
        consumers: cli.consumers,
        groups: Some(if cli.shared_group { 1 } else { cli.consumers }),
        in_flight: Some(cli.in_flight),
        records_sent: Counters::get(&c.sent),
        records_acked: commits,
        records_failed: Counters::get(&c.failed),
        records_consumed: 0,
        elapsed_s: (committed.elapsed.as_secs_f64() * 1000.0).round() / 1000.0,
        records_per_sec: commits_per_sec,
        mib_per_sec: 0.0,
        latency_ms: Latency::of(&committed.latency),
        commit_latency_ms: None,
        timeline: timeline.into_samples(),
    })
}

fn progress_bar(cli: &Cli) -> ProgressBar {
    if cli.no_progress {
        return ProgressBar::hidden();
    }
    // indicatif draws to stderr and stays silent when stderr is not a terminal.
    let bar = ProgressBar::new(cli.records);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} records {per_sec} eta {eta}",
        )
        .expect("valid progress template"),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// Why a finished run did not do what was asked (records failed, or fewer were consumed).
pub fn shortfall(cli: &Cli, s: &Summary) -> Option<String> {
    if s.records_failed > 0 {
        return Some(format!(
            "{} records failed to be delivered",
            s.records_failed
        ));
    }
    let wanted = match cli.mode {
        Mode::Produce | Mode::Commit => return None,
        Mode::Consume => cli.records,
        Mode::E2e => s.records_acked,
    };
    (s.records_consumed < wanted).then(|| {
        format!(
            "consumed {} of {wanted} records before {} ms passed without one",
            s.records_consumed, cli.idle_timeout_ms
        )
    })
}

/// Entry point of the binary: exit 0 on success, 1 when records failed or were not all
/// consumed, 2 on errors.
pub fn main(cli: Cli) -> i32 {
    match run(&cli) {
        Ok(summary) => {
            if let Some(path) = &cli.svg
                && let Err(e) = chart::write_svg(path, &summary)
            {
                eprintln!("error: writing {}: {e:#}", path.display());
                return crate::error::EXIT_USAGE;
            }
            if cli.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&summary).expect("summary encodes")
                );
            } else {
                print!("{}", summary.render());
            }
            match shortfall(&cli, &summary) {
                Some(why) => {
                    eprintln!("error: {why}");
                    crate::error::EXIT_KAFKA
                }
                None => crate::error::EXIT_OK,
            }
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            crate::error::EXIT_USAGE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn flags_parse() {
        let cli = Cli::try_parse_from([
            "sluice-bench",
            "e2e",
            "-b",
            "h:1",
            "-p",
            "16",
            "-n",
            "500",
            "--acks",
            "all",
            "--compression",
            "lz4",
            "-X",
            "fetch.wait.max.ms=5",
            "--json",
        ])
        .unwrap();
        assert_eq!(cli.mode, Mode::E2e);
        assert_eq!((cli.partitions, cli.records), (16, 500));
        assert_eq!(cli.acks, Acks::All);
        assert_eq!(
            cli.properties,
            vec![("fetch.wait.max.ms".to_owned(), "5".to_owned())]
        );
        assert!(
            Cli::try_parse_from(["sluice-bench", "produce", "--compression", "brotli"]).is_err()
        );
        assert!(Cli::try_parse_from(["sluice-bench", "sideways"]).is_err());
    }

    #[test]
    fn shortfalls_fail_the_run() {
        let cli = Cli::try_parse_from(["sluice-bench", "consume", "-n", "10"]).unwrap();
        let mut s = Summary {
            mode: "consume".into(),
            client: String::new(),
            bootstrap_server: String::new(),
            topic: "t".into(),
            partitions: 1,
            record_size: 1,
            acks: "1".into(),
            compression: "none".into(),
            producers: 0,
            consumers: 1,
            groups: None,
            in_flight: None,
            records_sent: 0,
            records_acked: 0,
            records_failed: 0,
            records_consumed: 10,
            elapsed_s: 1.0,
            records_per_sec: 10.0,
            mib_per_sec: 0.0,
            latency_ms: None,
            commit_latency_ms: None,
            timeline: Vec::new(),
        };
        assert_eq!(shortfall(&cli, &s), None);
        s.records_consumed = 9;
        assert!(
            shortfall(&cli, &s)
                .unwrap()
                .starts_with("consumed 9 of 10 records")
        );
        s.records_failed = 1;
        assert!(shortfall(&cli, &s).unwrap().contains("failed"));
    }
}
