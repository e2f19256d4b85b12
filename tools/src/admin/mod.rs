//! `sluice-admin`: the command line (clap) and the dispatch of each subcommand.

mod assignments;
mod cluster;
mod config;
mod consume;
mod group;
mod offsets;
mod produce;
mod topic;

use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::args::{Acks, Position, key_value, timestamp_ms};
use crate::client::Cluster;
use crate::error::ToolError;
use crate::table::Output;

/// Administer Sluice, or any Kafka-compatible broker, over the Kafka protocol.
///
/// Exit codes: 0 success, 1 the broker answered with a Kafka error, 2 bad usage or no broker.
#[derive(Debug, Parser)]
#[command(name = "sluice-admin", version)]
pub struct Cli {
    // No SLUICE_* environment variable on purpose: the broker reads those as its own
    // configuration and rejects unknown keys.
    /// Broker to bootstrap from (HOST:PORT).
    #[arg(
        short = 'b',
        long = "bootstrap-server",
        global = true,
        default_value = "localhost:9092"
    )]
    pub bootstrap_server: String,
    /// Print JSON instead of tables (JSON lines for `consume`).
    #[arg(long, global = true)]
    pub json: bool,
    /// How long to wait for a connection or an answer.
    #[arg(long, global = true, default_value_t = 30_000, value_name = "MS")]
    pub timeout_ms: u64,
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create, list, describe, alter and delete topics.
    #[command(subcommand)]
    Topic(TopicCmd),
    /// Show and change topic and broker configs.
    #[command(subcommand)]
    Config(ConfigCmd),
    /// Earliest and latest offsets per partition, or the offset at a time.
    Offsets(OffsetsArgs),
    /// Write records from arguments or stdin lines.
    Produce(ProduceArgs),
    /// Read records and print them as text or JSON lines.
    Consume(ConsumeArgs),
    /// List, describe and delete consumer groups; reset their committed offsets.
    #[command(subcommand)]
    Group(GroupCmd),
    /// Brokers, the metadata Raft quorum, and pchannel assignments.
    #[command(subcommand)]
    Cluster(ClusterCmd),
}

/// `cluster ...`
#[derive(Debug, Subcommand)]
pub enum ClusterCmd {
    /// Brokers (alive or not), the controller, and the metadata Raft quorum: leader, term, high
    /// watermark, and each voter's log end offset and lag (DescribeCluster, DescribeQuorum).
    Status,
    /// Pchannels with their owner, term and state (ASSIGNED when a live broker serves it,
    /// UNAVAILABLE when none does), and which pchannel holds each partition (Metadata,
    /// DescribeLogDirs).
    Assignments {
        /// Only place the partitions of these topics (every pchannel is still listed).
        topics: Vec<String>,
        /// Leave internal topics (`__consumer_offsets`, ...) out of the partition list.
        #[arg(long, conflicts_with = "topics")]
        exclude_internal: bool,
    },
}

/// `group ...`
#[derive(Debug, Subcommand)]
pub enum GroupCmd {
    /// List groups (on every broker) with their states.
    List {
        /// Only groups in this state: Empty, Stable, PreparingRebalance, CompletingRebalance
        /// or Dead (any case).
        #[arg(long, value_parser = group::canonical_state)]
        state: Option<&'static str>,
    },
    /// Show a group's state, members and committed offsets with log end offsets and lag.
    Describe {
        /// Group id.
        group: String,
    },
    /// Delete groups (they must have no members).
    Delete {
        /// Group ids.
        #[arg(required = true)]
        groups: Vec<String>,
    },
    /// Plan (default) or commit (--execute) new offsets for an inactive group on one topic.
    ResetOffsets {
        /// Group id.
        group: String,
        /// Topic whose partitions are reset (all of them).
        #[arg(long)]
        topic: String,
        #[command(flatten)]
        to: ResetTo,
        /// Commit the new offsets (without it: a dry run that only prints the plan).
        #[arg(long)]
        execute: bool,
    },
}

/// Where `group reset-offsets` moves the offsets.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct ResetTo {
    /// The earliest offset of each partition.
    #[arg(long)]
    pub to_earliest: bool,
    /// The log end offset of each partition.
    #[arg(long)]
    pub to_latest: bool,
    /// This offset (moved into the log's range when outside it).
    #[arg(long, value_name = "N")]
    pub to_offset: Option<i64>,
    /// The first record at or after this time: YYYY-MM-DDTHH:MM:SS[.mmm]Z or ms since the
    /// epoch (the log end when there is none).
    #[arg(long, value_name = "TIME", value_parser = timestamp_ms)]
    pub to_datetime: Option<i64>,
}

/// `topic ...`
#[derive(Debug, Subcommand)]
pub enum TopicCmd {
    /// Create a topic.
    Create {
        /// Topic name.
        topic: String,
        /// Partition count (broker default when left out).
        #[arg(short, long)]
        partitions: Option<i32>,
        /// Replication factor (broker default when left out).
        #[arg(short, long)]
        replication_factor: Option<i16>,
        /// Topic config, repeatable (`--config retention.ms=3600000`).
        #[arg(short, long = "config", value_name = "KEY=VALUE", value_parser = key_value)]
        configs: Vec<(String, String)>,
        /// Succeed (exit 0) when the topic exists already.
        #[arg(long)]
        if_not_exists: bool,
        /// Ask the broker to check the request without creating anything.
        #[arg(long)]
        validate_only: bool,
    },
    /// List topics with their partition counts.
    List {
        /// Leave internal topics (`__consumer_offsets`, ...) out.
        #[arg(long)]
        exclude_internal: bool,
    },
    /// Show partitions, leaders, epochs and config overrides of topics.
    Describe {
        /// Topic names (all topics when none).
        topics: Vec<String>,
    },
    /// Grow the partition count and change configs of a topic.
    Alter {
        /// Topic name.
        topic: String,
        /// New total partition count (can only grow).
        #[arg(short, long)]
        partitions: Option<i32>,
        /// Config to set, repeatable.
        #[arg(short, long = "config", value_name = "KEY=VALUE", value_parser = key_value)]
        configs: Vec<(String, String)>,
        /// Config override to remove (back to the default), repeatable.
        #[arg(long = "delete-config", value_name = "KEY")]
        delete_configs: Vec<String>,
    },
    /// Delete topics.
    Delete {
        /// Topic names.
        #[arg(required = true)]
        topics: Vec<String>,
        /// Succeed (exit 0) for topics that do not exist.
        #[arg(long)]
        if_exists: bool,
    },
    /// Add partitions to a topic.
    AddPartitions {
        /// Topic name.
        topic: String,
        /// How many partitions to add.
        #[arg(short, long, value_parser = clap::value_parser!(i32).range(1..))]
        count: i32,
        /// Ask the broker to check the request without changing anything.
        #[arg(long)]
        validate_only: bool,
    },
}

/// Which config resource: a topic or a broker.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct Resource {
    /// A topic's configs.
    #[arg(long)]
    pub topic: Option<String>,
    /// A broker's configs (the bootstrap broker when no id is given).
    #[arg(long, value_name = "ID")]
    pub broker: Option<Option<i32>>,
}

/// `config ...`
#[derive(Debug, Subcommand)]
pub enum ConfigCmd {
    /// Show configs: overrides only, or every config with `--all`.
    Describe {
        #[command(flatten)]
        resource: Resource,
        /// Show every config with its source, not only overrides.
        #[arg(long)]
        all: bool,
    },
    /// Set configs (incrementally: other overrides stay).
    Set {
        #[command(flatten)]
        resource: Resource,
        /// Configs to set.
        #[arg(required = true, value_name = "KEY=VALUE", value_parser = key_value)]
        configs: Vec<(String, String)>,
    },
    /// Remove config overrides (back to the default).
    Delete {
        #[command(flatten)]
        resource: Resource,
        /// Config names.
        #[arg(required = true, value_name = "KEY")]
        keys: Vec<String>,
    },
}

/// `offsets TOPIC`
#[derive(Debug, Args)]
pub struct OffsetsArgs {
    /// Topic name.
    pub topic: String,
    /// Only these partitions (repeatable; all when left out).
    #[arg(short, long = "partition")]
    pub partitions: Vec<i32>,
    /// The offset of the first record at or after this time: ms since the epoch or
    /// YYYY-MM-DDTHH:MM:SSZ (without it: earliest and latest offsets).
    #[arg(long, value_parser = timestamp_ms)]
    pub time: Option<i64>,
}

/// `produce TOPIC [VALUE...]`
#[derive(Debug, Args)]
pub struct ProduceArgs {
    /// Topic name.
    pub topic: String,
    /// Record values; one record per stdin line when none are given.
    pub values: Vec<String>,
    /// Key of every record (the Java client's murmur2 picks the partition).
    #[arg(short, long)]
    pub key: Option<String>,
    /// Split each stdin line at the first SEP into key and value.
    #[arg(long, value_name = "SEP", conflicts_with = "key")]
    pub key_separator: Option<String>,
    /// Header on every record, repeatable.
    #[arg(short = 'H', long = "header", value_name = "KEY=VALUE", value_parser = key_value)]
    pub headers: Vec<(String, String)>,
    /// Write to this partition instead of using the partitioner.
    #[arg(short, long)]
    pub partition: Option<i32>,
    /// 0 (no answer), 1 (leader) or all.
    #[arg(long, default_value = "all")]
    pub acks: Acks,
    /// Batch compression: none, gzip, snappy, lz4, zstd.
    #[arg(long, default_value = "none")]
    pub compression: String,
}

/// `consume TOPIC`
#[derive(Debug, Args)]
pub struct ConsumeArgs {
    /// Topic name.
    pub topic: String,
    /// Only these partitions (repeatable; all when left out).
    #[arg(short, long = "partition")]
    pub partitions: Vec<i32>,
    /// Start at earliest, latest, an OFFSET, or @TIMESTAMP (ms or YYYY-MM-DDTHH:MM:SSZ).
    #[arg(long, default_value = "earliest")]
    pub from: Position,
    /// Stop after this many records.
    #[arg(short = 'n', long)]
    pub count: Option<u64>,
    /// Keep waiting for new records at the end of the log (until --count or Ctrl-C).
    #[arg(short, long)]
    pub follow: bool,
    /// text (the value, one per line) or json (JSON lines with key, headers, offset, ...).
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    pub format: String,
    /// In text format, print KEY<TAB>VALUE.
    #[arg(long)]
    pub print_key: bool,
}

/// Runs the command; returns the process exit code.
pub fn main(cli: Cli) -> i32 {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime starts");
    match runtime.block_on(run(&cli)) {
        Ok(()) => crate::error::EXIT_OK,
        Err(e) => {
            eprintln!("error: {e}");
            if let Some(hint) = e.hint() {
                eprintln!("hint: {hint}");
            }
            e.exit_code()
        }
    }
}

async fn run(cli: &Cli) -> Result<(), ToolError> {
    let timeout = Duration::from_millis(cli.timeout_ms);
    let mut cluster = Cluster::connect(&cli.bootstrap_server, timeout).await?;
    let out: Output = match &cli.command {
        Command::Topic(cmd) => topic::run(&mut cluster, cmd).await?,
        Command::Config(cmd) => config::run(&mut cluster, cmd).await?,
        Command::Offsets(args) => offsets::run(&mut cluster, args).await?,
        Command::Produce(args) => produce::run(&mut cluster, args).await?,
        Command::Group(cmd) => group::run(&mut cluster, cmd).await?,
        Command::Cluster(ClusterCmd::Status) => cluster::status(&mut cluster).await?,
        Command::Cluster(ClusterCmd::Assignments {
            topics,
            exclude_internal,
        }) => assignments::assignments(&mut cluster, topics, *exclude_internal).await?,
        Command::Consume(args) => {
            return consume::run(&mut cluster, args, cli.json).await;
        }
    };
    out.print(cli.json);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("sluice-admin").chain(args.iter().copied()))
    }

    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_go_anywhere() {
        let cli = parse(&["topic", "list", "-b", "h:1", "--json"]).unwrap();
        assert_eq!(cli.bootstrap_server, "h:1");
        assert!(cli.json);
        let cli = parse(&["--bootstrap-server", "h:2", "topic", "list"]).unwrap();
        assert_eq!(cli.bootstrap_server, "h:2");
        assert!(!cli.json);
    }

    #[test]
    fn topic_create_takes_configs() {
        let cli = parse(&[
            "topic",
            "create",
            "t",
            "-p",
            "3",
            "--config",
            "retention.ms=10",
        ])
        .unwrap();
        let Command::Topic(TopicCmd::Create {
            topic,
            partitions,
            configs,
            ..
        }) = cli.command
        else {
            panic!("parsed as {:?}", cli.command);
        };
        assert_eq!((topic.as_str(), partitions), ("t", Some(3)));
        assert_eq!(configs, vec![("retention.ms".to_owned(), "10".to_owned())]);
    }

    #[test]
    fn config_needs_exactly_one_resource() {
        assert!(parse(&["config", "describe"]).is_err());
        assert!(parse(&["config", "describe", "--topic", "t", "--broker", "1"]).is_err());
        let cli = parse(&["config", "describe", "--broker"]).unwrap();
        let Command::Config(ConfigCmd::Describe { resource, .. }) = cli.command else {
            panic!("parsed as {:?}", cli.command);
        };
        assert_eq!(resource.broker, Some(None));
        assert!(parse(&["config", "set", "--topic", "t"]).is_err());
        assert!(parse(&["config", "set", "--topic", "t", "novalue"]).is_err());
    }

    #[test]
    fn consume_positions_and_produce_acks() {
        let cli = parse(&["consume", "t", "--from", "@1000", "-n", "5"]).unwrap();
        let Command::Consume(args) = cli.command else {
            panic!()
        };
        assert_eq!(args.from, Position::Timestamp(1000));
        assert_eq!(args.count, Some(5));
        assert!(parse(&["consume", "t", "--format", "xml"]).is_err());
        let cli = parse(&["produce", "t", "--acks", "1", "-H", "a=b", "v1", "v2"]).unwrap();
        let Command::Produce(args) = cli.command else {
            panic!()
        };
        assert_eq!(args.acks, Acks::Leader);
        assert_eq!(args.values, vec!["v1", "v2"]);
        assert!(parse(&["produce", "t", "--acks", "2"]).is_err());
        assert!(parse(&["produce", "t", "-k", "k", "--key-separator", ":"]).is_err());
        assert!(parse(&["topic", "add-partitions", "t", "--count", "0"]).is_err());
    }

    #[test]
    fn group_reset_needs_exactly_one_target() {
        assert!(parse(&["group", "reset-offsets", "g", "--topic", "t"]).is_err());
        assert!(
            parse(&[
                "group",
                "reset-offsets",
                "g",
                "--topic",
                "t",
                "--to-earliest",
                "--to-latest"
            ])
            .is_err()
        );
        let cli = parse(&[
            "group",
            "reset-offsets",
            "g",
            "--topic",
            "t",
            "--to-datetime",
            "2024-01-02T03:04:05Z",
            "--execute",
        ])
        .unwrap();
        let Command::Group(GroupCmd::ResetOffsets { to, execute, .. }) = cli.command else {
            panic!("parsed as {:?}", cli.command);
        };
        assert_eq!(to.to_datetime, Some(1_704_164_645_000));
        assert!(execute);
        assert!(parse(&["group", "list", "--state", "nope"]).is_err());
        assert!(parse(&["group", "delete"]).is_err());
    }

    #[test]
    fn cluster_subcommands() {
        assert!(matches!(
            parse(&["cluster", "status", "--json"]).unwrap().command,
            Command::Cluster(ClusterCmd::Status)
        ));
        let cli = parse(&["cluster", "assignments", "a", "b"]).unwrap();
        let Command::Cluster(ClusterCmd::Assignments {
            topics,
            exclude_internal,
        }) = cli.command
        else {
            panic!("parsed as {:?}", cli.command);
        };
        assert_eq!(
            (topics, exclude_internal),
            (vec!["a".into(), "b".into()], false)
        );
        assert!(parse(&["cluster", "assignments", "--exclude-internal"]).is_ok());
        assert!(parse(&["cluster", "assignments", "a", "--exclude-internal"]).is_err());
        assert!(parse(&["cluster"]).is_err());
    }
}
