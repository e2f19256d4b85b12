//! Broker configuration: defaults, a TOML file, environment variables and flags, with Kafka's
//! own key names where Kafka has one.
//!
//! Every key is listed once in [`KEYS`] with its default and description; the file, the
//! environment (`SLUICE_` + key upper-cased with `.` → `_`) and `--override key=value` flags all
//! go through [`Config::set`], so one parser validates every source and an unknown or invalid key
//! stops start-up with a message naming it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::group::consumer::Assignor;

/// Why a configuration could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A key that Sluice does not know.
    #[error(
        "unknown configuration key `{key}` (from {source_name}); `sluice --help` lists the keys"
    )]
    UnknownKey {
        /// The key as written.
        key: String,
        /// Where it came from (file path, environment, flag).
        source_name: String,
    },
    /// A known key with a value that does not parse or is out of range.
    #[error("invalid value {value:?} for `{key}` (from {source_name}): {reason}")]
    InvalidValue {
        /// The key.
        key: String,
        /// The value as written.
        value: String,
        /// Where it came from.
        source_name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The config file could not be read or is not valid TOML.
    #[error("cannot read config file {path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
}

/// When a pchannel's segment writes are made durable with fsync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// A group commit that holds an `acks=all` produce is fsynced before it is answered;
    /// `acks=1` is answered once the bytes are in the segment.
    Always,
    /// A background flusher syncs every `wal.fsync.interval.ms`; `acks=all` waits for it.
    Interval,
    /// Never fsync: the page cache only (a machine crash can lose acknowledged data).
    Never,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Human,
    /// One JSON object per line.
    Json,
}

/// One Raft voter: node id and the address its Raft listener is reachable at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Voter {
    /// The voter's `node.id`.
    pub node_id: u64,
    /// Its Raft listener address.
    pub addr: String,
}

/// The effective broker configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// `node.id`: this broker's id.
    pub node_id: u64,
    /// `log.dirs`: the data directory.
    pub data_dir: PathBuf,
    /// `listeners`: the Kafka listener address.
    pub listen: String,
    /// `advertised.listeners`: the address clients are told to connect to.
    pub advertise: String,
    /// `metrics.listen`: the Prometheus `/metrics` HTTP endpoint.
    pub metrics_listen: String,
    /// `num.partitions`: default partition count of auto-created topics.
    pub num_partitions: i32,
    /// `default.replication.factor`.
    pub default_replication_factor: i16,
    /// `log.retention.ms` (or `log.retention.hours`); `None` keeps data forever.
    pub retention_ms: Option<i64>,
    /// `log.retention.bytes` per partition; `None` means unlimited.
    pub retention_bytes: Option<i64>,
    /// `log.segment.bytes`: size of each preallocated segment file.
    pub segment_bytes: u64,
    /// `auto.create.topics.enable`.
    pub auto_create_topics: bool,
    /// `message.max.bytes`: the largest record batch accepted.
    pub message_max_bytes: i32,
    /// `socket.request.max.bytes`: the largest request frame accepted.
    pub socket_request_max_bytes: i32,
    /// `max.connections`.
    pub max_connections: usize,
    /// `pchannels`: number of physical WALs, fixed at cluster creation.
    pub pchannels: u32,
    /// `wal.fsync.policy`.
    pub fsync_policy: FsyncPolicy,
    /// `wal.fsync.interval.ms`, used by [`FsyncPolicy::Interval`].
    pub fsync_interval: Duration,
    /// `wal.writeback.bytes`: start the kernel's writeback of a pchannel's appended bytes
    /// every this many bytes (a hint that changes nothing about durability); 0 disables it.
    pub writeback_bytes: u64,
    /// `raft.listen`: the Raft transport listener.
    pub raft_listen: String,
    /// `controller.quorum.voters`: the Raft voters; empty means a single-voter group.
    pub voters: Vec<Voter>,
    /// `log.format`.
    pub log_format: LogFormat,
    /// `log.level`: default level for every component.
    pub log_level: slog::Level,
    /// `log.levels`: per-component levels, e.g. `raft=warn,log_store=debug`.
    pub component_levels: Vec<(String, slog::Level)>,
    /// `group.initial.rebalance.delay.ms`: how long the first rebalance of an empty group waits
    /// for more members.
    pub group_initial_rebalance_delay: Duration,
    /// `group.heartbeat.hold.max.ms`: the longest a classic member's Heartbeat to a Stable
    /// group is held open so a rebalance reaches the member at once (0: answer at once).
    pub group_heartbeat_hold_max: Duration,
    /// `offsets.topic.num.partitions`: partitions of `__consumer_offsets` when it is created.
    pub offsets_topic_num_partitions: u32,
    /// `offsets.retention.minutes`: how long committed offsets of an empty group are kept.
    pub offsets_retention: Duration,
    /// `offsets.retention.check.interval.ms`: how often expired offsets (and offsets of deleted
    /// topics) are removed.
    pub offsets_retention_check_interval: Duration,
    /// `transaction.state.log.num.partitions`: partitions of `__transaction_state`.
    pub transaction_state_num_partitions: u32,
    /// `transaction.max.timeout.ms`: the largest transaction timeout a producer may ask for.
    pub transaction_max_timeout: Duration,
    /// `transaction.abort.timed.out.transaction.cleanup.interval.ms`: how often transactions
    /// past their timeout are looked for and aborted.
    pub transaction_abort_interval: Duration,
    /// `transactional.id.expiration.ms`: how long an idle transactional id is remembered.
    pub transactional_id_expiration: Duration,
    /// `producer.id.expiration.ms`: how long an idle idempotent producer's sequences are kept.
    pub producer_id_expiration: Duration,
    /// `group.consumer.session.timeout.ms`: a consumer-protocol (KIP-848) member that does not
    /// heartbeat for this long is fenced.
    pub group_consumer_session_timeout: Duration,
    /// `group.consumer.heartbeat.interval.ms`: how often consumer-protocol members heartbeat.
    pub group_consumer_heartbeat_interval: Duration,
    /// `group.consumer.assignors`: the server-side assignors members may name; the first is the
    /// default.
    pub group_consumer_assignors: Vec<Assignor>,
}

/// A configuration key: its name, its default as written in a file, and what it does.
pub struct KeySpec {
    /// The key, spelled as in Kafka where Kafka has it.
    pub name: &'static str,
    /// The default value.
    pub default: &'static str,
    /// One line of documentation.
    pub doc: &'static str,
}

/// Every key the broker accepts.
pub const KEYS: &[KeySpec] = &[
    KeySpec {
        name: "node.id",
        default: "1",
        doc: "this broker's id",
    },
    KeySpec {
        name: "log.dirs",
        default: "./sluice-data",
        doc: "data directory (one directory)",
    },
    KeySpec {
        name: "listeners",
        default: "PLAINTEXT://0.0.0.0:9092",
        doc: "Kafka listener, HOST:PORT or PLAINTEXT://HOST:PORT",
    },
    KeySpec {
        name: "advertised.listeners",
        default: "",
        doc: "address given to clients; empty: derived from listeners (0.0.0.0 becomes localhost)",
    },
    KeySpec {
        name: "metrics.listen",
        default: "0.0.0.0:9464",
        doc: "Prometheus /metrics HTTP listener; empty disables it",
    },
    KeySpec {
        name: "num.partitions",
        default: "1",
        doc: "partitions of an auto-created topic",
    },
    KeySpec {
        name: "default.replication.factor",
        default: "1",
        doc: "replication factor of new topics (only 1 today)",
    },
    KeySpec {
        name: "log.retention.hours",
        default: "168",
        doc: "time retention in hours (log.retention.ms wins when set)",
    },
    KeySpec {
        name: "log.retention.ms",
        default: "",
        doc: "time retention in milliseconds; -1 keeps data forever",
    },
    KeySpec {
        name: "log.retention.bytes",
        default: "-1",
        doc: "size retention per partition; -1 is unlimited",
    },
    KeySpec {
        name: "log.segment.bytes",
        default: "1073741824",
        doc: "size of each preallocated segment file",
    },
    KeySpec {
        name: "auto.create.topics.enable",
        default: "true",
        doc: "create unknown topics on Metadata/Produce",
    },
    KeySpec {
        name: "message.max.bytes",
        default: "1048588",
        doc: "largest record batch accepted",
    },
    KeySpec {
        name: "socket.request.max.bytes",
        default: "104857600",
        doc: "largest request frame accepted",
    },
    KeySpec {
        name: "max.connections",
        default: "10000",
        doc: "concurrent client connections",
    },
    KeySpec {
        name: "pchannels",
        default: "16",
        doc: "physical WALs in the cluster, fixed at cluster creation",
    },
    KeySpec {
        name: "wal.fsync.policy",
        default: "always",
        doc: "always | interval | never: when WAL writes are fsynced",
    },
    KeySpec {
        name: "wal.fsync.interval.ms",
        default: "5",
        doc: "flush interval under wal.fsync.policy=interval",
    },
    KeySpec {
        name: "wal.writeback.bytes",
        default: "33554432",
        doc: "start writeback of unsynced WAL writes every this many bytes (a hint, not a sync); 0 disables",
    },
    KeySpec {
        name: "raft.listen",
        default: "127.0.0.1:9095",
        doc: "Raft transport listener",
    },
    KeySpec {
        name: "controller.quorum.voters",
        default: "",
        doc: "Raft voters as ID@HOST:PORT,...; empty runs a one-voter group",
    },
    KeySpec {
        name: "log.format",
        default: "human",
        doc: "human | json",
    },
    KeySpec {
        name: "log.level",
        default: "info",
        doc: "trace | debug | info | warning | error | critical",
    },
    KeySpec {
        name: "log.levels",
        default: "",
        doc: "per-component levels, e.g. raft=warning,log_store=debug",
    },
    KeySpec {
        name: "group.initial.rebalance.delay.ms",
        default: "3000",
        doc: "how long the first rebalance of an empty consumer group waits for more members",
    },
    KeySpec {
        name: "group.heartbeat.hold.max.ms",
        default: "5000",
        doc: "longest a classic group member's Heartbeat is held open so it learns of a \
              rebalance at once (at most a third of its session timeout; 0 answers at once)",
    },
    KeySpec {
        name: "offsets.topic.num.partitions",
        default: "50",
        doc: "partitions of __consumer_offsets, fixed when the broker first creates it",
    },
    KeySpec {
        name: "offsets.retention.minutes",
        default: "10080",
        doc: "how long committed offsets of an empty consumer group are kept",
    },
    KeySpec {
        name: "offsets.retention.check.interval.ms",
        default: "600000",
        doc: "how often expired offsets and offsets of deleted topics are removed",
    },
    KeySpec {
        name: "transaction.state.log.num.partitions",
        default: "50",
        doc: "partitions of __transaction_state, fixed when the broker first creates it",
    },
    KeySpec {
        name: "transaction.max.timeout.ms",
        default: "900000",
        doc: "the largest transaction.timeout.ms a transactional producer may use",
    },
    KeySpec {
        name: "transaction.abort.timed.out.transaction.cleanup.interval.ms",
        default: "10000",
        doc: "how often transactions open longer than their timeout are aborted",
    },
    KeySpec {
        name: "transactional.id.expiration.ms",
        default: "604800000",
        doc: "how long the state of a transactional id without transactions is kept",
    },
    KeySpec {
        name: "producer.id.expiration.ms",
        default: "86400000",
        doc: "how long a partition keeps an idle idempotent producer's sequence numbers",
    },
    KeySpec {
        name: "group.consumer.session.timeout.ms",
        default: "45000",
        doc: "group.protocol=consumer members are fenced after this long without a heartbeat",
    },
    KeySpec {
        name: "group.consumer.heartbeat.interval.ms",
        default: "5000",
        doc: "how often group.protocol=consumer members heartbeat (keep below the session timeout)",
    },
    KeySpec {
        name: "group.consumer.assignors",
        default: "uniform,range",
        doc: "server-side assignors consumer groups may use (uniform, range); the first is the default",
    },
];

impl Default for Config {
    fn default() -> Self {
        let mut config = Config {
            node_id: 0,
            data_dir: PathBuf::new(),
            listen: String::new(),
            advertise: String::new(),
            metrics_listen: String::new(),
            num_partitions: 0,
            default_replication_factor: 0,
            retention_ms: None,
            retention_bytes: None,
            segment_bytes: 0,
            auto_create_topics: false,
            message_max_bytes: 0,
            socket_request_max_bytes: 0,
            max_connections: 0,
            pchannels: 0,
            fsync_policy: FsyncPolicy::Always,
            fsync_interval: Duration::ZERO,
            writeback_bytes: 0,
            raft_listen: String::new(),
            voters: Vec::new(),
            log_format: LogFormat::Human,
            log_level: slog::Level::Info,
            component_levels: Vec::new(),
            group_initial_rebalance_delay: Duration::ZERO,
            group_heartbeat_hold_max: Duration::ZERO,
            offsets_topic_num_partitions: 0,
            offsets_retention: Duration::ZERO,
            offsets_retention_check_interval: Duration::ZERO,
            transaction_state_num_partitions: 0,
            transaction_max_timeout: Duration::ZERO,
            transaction_abort_interval: Duration::ZERO,
            transactional_id_expiration: Duration::ZERO,
            producer_id_expiration: Duration::ZERO,
            group_consumer_session_timeout: Duration::ZERO,
            group_consumer_heartbeat_interval: Duration::ZERO,
            group_consumer_assignors: Vec::new(),
        };
        for key in KEYS {
            config
                .set(key.name, key.default, "defaults")
                .expect("every default in KEYS parses");
        }
        config
    }
}

impl Config {
    /// Sets one key from its textual value, validating it.
    pub fn set(&mut self, key: &str, value: &str, source_name: &str) -> Result<(), ConfigError> {
        let invalid = |reason: &str| ConfigError::InvalidValue {
            key: key.to_string(),
            value: value.to_string(),
            source_name: source_name.to_string(),
            reason: reason.to_string(),
        };
        let v = value.trim();
        match key {
            "node.id" => self.node_id = parse(v).map_err(|e| invalid(&e))?,
            "log.dirs" => {
                if v.is_empty() || v.contains(',') {
                    return Err(invalid("exactly one directory is supported"));
                }
                self.data_dir = PathBuf::from(v);
            }
            "listeners" => self.listen = parse_listener(v).map_err(|e| invalid(&e))?,
            "advertised.listeners" => {
                self.advertise = if v.is_empty() {
                    String::new()
                } else {
                    parse_listener(v).map_err(|e| invalid(&e))?
                }
            }
            "metrics.listen" => {
                if !v.is_empty() {
                    v.parse::<SocketAddr>()
                        .map_err(|e| invalid(&e.to_string()))?;
                }
                self.metrics_listen = v.to_string();
            }
            "num.partitions" => {
                self.num_partitions = parse_range(v, 1, 100_000).map_err(|e| invalid(&e))?
            }
            "default.replication.factor" => {
                self.default_replication_factor = parse_range(v, 1, 1)
                    .map_err(|_| invalid("only replication factor 1 is supported today"))?
            }
            "log.retention.hours" => {
                let hours: i64 = parse(v).map_err(|e| invalid(&e))?;
                self.retention_ms = (hours >= 0).then(|| hours.saturating_mul(3_600_000));
            }
            "log.retention.ms" => {
                if !v.is_empty() {
                    let ms: i64 = parse(v).map_err(|e| invalid(&e))?;
                    self.retention_ms = (ms >= 0).then_some(ms);
                }
            }
            "log.retention.bytes" => {
                let bytes: i64 = parse(v).map_err(|e| invalid(&e))?;
                self.retention_bytes = (bytes >= 0).then_some(bytes);
            }
            "log.segment.bytes" => {
                self.segment_bytes = parse_range(v, 1 << 16, 1 << 40).map_err(|e| invalid(&e))?
            }
            "auto.create.topics.enable" => {
                self.auto_create_topics = parse_bool(v).map_err(|e| invalid(&e))?
            }
            "message.max.bytes" => {
                self.message_max_bytes = parse_range(v, 64, i32::MAX).map_err(|e| invalid(&e))?
            }
            "socket.request.max.bytes" => {
                self.socket_request_max_bytes =
                    parse_range(v, 1024, i32::MAX).map_err(|e| invalid(&e))?
            }
            "max.connections" => {
                self.max_connections = parse_range(v, 1, 1_000_000).map_err(|e| invalid(&e))?
            }
            "pchannels" => self.pchannels = parse_range(v, 1, 4096).map_err(|e| invalid(&e))?,
            "wal.fsync.policy" => {
                self.fsync_policy = match v {
                    "always" => FsyncPolicy::Always,
                    "interval" => FsyncPolicy::Interval,
                    "never" => FsyncPolicy::Never,
                    _ => return Err(invalid("expected always, interval or never")),
                }
            }
            "wal.fsync.interval.ms" => {
                let ms: u64 = parse_range(v, 1, 60_000).map_err(|e| invalid(&e))?;
                self.fsync_interval = Duration::from_millis(ms);
            }
            "wal.writeback.bytes" => {
                self.writeback_bytes = parse_range(v, 0, 1 << 40).map_err(|e| invalid(&e))?
            }
            "raft.listen" => {
                v.parse::<SocketAddr>()
                    .map_err(|e| invalid(&e.to_string()))?;
                self.raft_listen = v.to_string();
            }
            "controller.quorum.voters" => self.voters = parse_voters(v).map_err(|e| invalid(&e))?,
            "log.format" => {
                self.log_format = match v {
                    "human" => LogFormat::Human,
                    "json" => LogFormat::Json,
                    _ => return Err(invalid("expected human or json")),
                }
            }
            "log.level" => self.log_level = parse_level(v).map_err(|e| invalid(&e))?,
            "log.levels" => {
                let mut levels = Vec::new();
                for item in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                    let (component, level) = item
                        .split_once('=')
                        .ok_or_else(|| invalid("expected COMPONENT=LEVEL,..."))?;
                    levels.push((
                        component.trim().to_string(),
                        parse_level(level.trim()).map_err(|e| invalid(&e))?,
                    ));
                }
                self.component_levels = levels;
            }
            "group.initial.rebalance.delay.ms" => {
                let ms: u64 = parse_range(v, 0, 3_600_000).map_err(|e| invalid(&e))?;
                self.group_initial_rebalance_delay = Duration::from_millis(ms);
            }
            "group.heartbeat.hold.max.ms" => {
                let ms: u64 = parse_range(v, 0, 600_000).map_err(|e| invalid(&e))?;
                self.group_heartbeat_hold_max = Duration::from_millis(ms);
            }
            "offsets.retention.minutes" => {
                let minutes: u64 = parse_range(v, 1, 1 << 32).map_err(|e| invalid(&e))?;
                self.offsets_retention = Duration::from_secs(minutes * 60);
            }
            "offsets.retention.check.interval.ms" => {
                let ms: u64 = parse_range(v, 1, 1 << 40).map_err(|e| invalid(&e))?;
                self.offsets_retention_check_interval = Duration::from_millis(ms);
            }
            "offsets.topic.num.partitions" => {
                self.offsets_topic_num_partitions =
                    parse_range(v, 1, 10_000).map_err(|e| invalid(&e))?;
            }
            "transaction.state.log.num.partitions" => {
                self.transaction_state_num_partitions =
                    parse_range(v, 1, 10_000).map_err(|e| invalid(&e))?;
            }
            "transaction.max.timeout.ms" => {
                let ms: u64 = parse_range(v, 1, i32::MAX as u64).map_err(|e| invalid(&e))?;
                self.transaction_max_timeout = Duration::from_millis(ms);
            }
            "transaction.abort.timed.out.transaction.cleanup.interval.ms" => {
                let ms: u64 = parse_range(v, 1, 1 << 40).map_err(|e| invalid(&e))?;
                self.transaction_abort_interval = Duration::from_millis(ms);
            }
            "transactional.id.expiration.ms" => {
                let ms: u64 = parse_range(v, 1, 1 << 40).map_err(|e| invalid(&e))?;
                self.transactional_id_expiration = Duration::from_millis(ms);
            }
            "producer.id.expiration.ms" => {
                let ms: u64 = parse_range(v, 1, 1 << 40).map_err(|e| invalid(&e))?;
                self.producer_id_expiration = Duration::from_millis(ms);
            }
            "group.consumer.session.timeout.ms" => {
                let ms: u64 = parse_range(v, 100, 3_600_000).map_err(|e| invalid(&e))?;
                self.group_consumer_session_timeout = Duration::from_millis(ms);
            }
            "group.consumer.heartbeat.interval.ms" => {
                let ms: u64 = parse_range(v, 10, 3_600_000).map_err(|e| invalid(&e))?;
                self.group_consumer_heartbeat_interval = Duration::from_millis(ms);
            }
            "group.consumer.assignors" => {
                let mut assignors = Vec::new();
                for name in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                    let a = Assignor::from_name(name)
                        .ok_or_else(|| invalid("expected a list of uniform and range"))?;
                    if !assignors.contains(&a) {
                        assignors.push(a);
                    }
                }
                if assignors.is_empty() {
                    return Err(invalid("name at least one assignor (uniform, range)"));
                }
                self.group_consumer_assignors = assignors;
            }
            _ => {
                return Err(ConfigError::UnknownKey {
                    key: key.to_string(),
                    source_name: source_name.to_string(),
                });
            }
        }
        Ok(())
    }

    /// Checks the rules between keys, once every source is applied: consumer-protocol members
    /// must heartbeat more often than their session times out (Kafka refuses to start too).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.group_consumer_heartbeat_interval >= self.group_consumer_session_timeout {
            return Err(ConfigError::InvalidValue {
                key: "group.consumer.heartbeat.interval.ms".into(),
                value: self
                    .group_consumer_heartbeat_interval
                    .as_millis()
                    .to_string(),
                source_name: "the effective configuration".into(),
                reason: format!(
                    "must be lower than group.consumer.session.timeout.ms ({})",
                    self.group_consumer_session_timeout.as_millis()
                ),
            });
        }
        Ok(())
    }

    /// Applies every key of a TOML document. Dotted keys may be written flat
    /// (`log.dirs = "/data"`) or as tables (`[log] dirs = "/data"`); both name `log.dirs`.
    pub fn apply_toml(&mut self, text: &str, source_name: &str) -> Result<(), ConfigError> {
        let table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| ConfigError::File {
                path: PathBuf::from(source_name),
                reason: e.to_string(),
            })?;
        let mut flat = Vec::new();
        flatten("", &toml::Value::Table(table), &mut flat);
        for (key, value) in flat {
            self.set(&key, &value, source_name)?;
        }
        Ok(())
    }

    /// Applies `SLUICE_*` environment variables (`SLUICE_LOG_DIRS` sets `log.dirs`).
    pub fn apply_env(
        &mut self,
        vars: impl Iterator<Item = (String, String)>,
    ) -> Result<(), ConfigError> {
        for (name, value) in vars {
            let Some(rest) = name.strip_prefix("SLUICE_") else {
                continue;
            };
            let key = rest.to_ascii_lowercase().replace('_', ".");
            let key = KEYS
                .iter()
                .find(|k| k.name.replace('_', ".") == key)
                .map(|k| k.name.to_string())
                .unwrap_or(key);
            self.set(&key, &value, &format!("environment variable {name}"))?;
        }
        Ok(())
    }

    /// The address clients are told to connect to.
    pub fn advertised_addr(&self) -> String {
        if !self.advertise.is_empty() {
            return self.advertise.clone();
        }
        match self.listen.rsplit_once(':') {
            Some(("0.0.0.0" | "[::]" | "::", port)) => format!("localhost:{port}"),
            _ => self.listen.clone(),
        }
    }

    /// The effective value of every key, in [`KEYS`] order, as `key = value` lines.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for key in KEYS {
            let value = match key.name {
                "node.id" => self.node_id.to_string(),
                "log.dirs" => self.data_dir.display().to_string(),
                "listeners" => self.listen.clone(),
                "advertised.listeners" => self.advertised_addr(),
                "metrics.listen" => self.metrics_listen.clone(),
                "num.partitions" => self.num_partitions.to_string(),
                "default.replication.factor" => self.default_replication_factor.to_string(),
                "log.retention.hours" => continue,
                "log.retention.ms" => self.retention_ms.unwrap_or(-1).to_string(),
                "log.retention.bytes" => self.retention_bytes.unwrap_or(-1).to_string(),
                "log.segment.bytes" => self.segment_bytes.to_string(),
                "auto.create.topics.enable" => self.auto_create_topics.to_string(),
                "message.max.bytes" => self.message_max_bytes.to_string(),
                "socket.request.max.bytes" => self.socket_request_max_bytes.to_string(),
                "max.connections" => self.max_connections.to_string(),
                "pchannels" => self.pchannels.to_string(),
                "wal.fsync.policy" => match self.fsync_policy {
                    FsyncPolicy::Always => "always".into(),
                    FsyncPolicy::Interval => "interval".into(),
                    FsyncPolicy::Never => "never".into(),
                },
                "wal.fsync.interval.ms" => self.fsync_interval.as_millis().to_string(),
                "wal.writeback.bytes" => self.writeback_bytes.to_string(),
                "raft.listen" => self.raft_listen.clone(),
                "controller.quorum.voters" => self
                    .voters
                    .iter()
                    .map(|v| format!("{}@{}", v.node_id, v.addr))
                    .collect::<Vec<_>>()
                    .join(","),
                "log.format" => match self.log_format {
                    LogFormat::Human => "human".into(),
                    LogFormat::Json => "json".into(),
                },
                "log.level" => self.log_level.as_str().to_ascii_lowercase(),
                "log.levels" => self
                    .component_levels
                    .iter()
                    .map(|(c, l)| format!("{c}={}", l.as_str().to_ascii_lowercase()))
                    .collect::<Vec<_>>()
                    .join(","),
                "group.initial.rebalance.delay.ms" => {
                    self.group_initial_rebalance_delay.as_millis().to_string()
                }
                "group.heartbeat.hold.max.ms" => {
                    self.group_heartbeat_hold_max.as_millis().to_string()
                }
                "offsets.topic.num.partitions" => self.offsets_topic_num_partitions.to_string(),
                "offsets.retention.minutes" => (self.offsets_retention.as_secs() / 60).to_string(),
                "offsets.retention.check.interval.ms" => self
                    .offsets_retention_check_interval
                    .as_millis()
                    .to_string(),
                "transaction.state.log.num.partitions" => {
                    self.transaction_state_num_partitions.to_string()
                }
                "transaction.max.timeout.ms" => {
                    self.transaction_max_timeout.as_millis().to_string()
                }
                "transaction.abort.timed.out.transaction.cleanup.interval.ms" => {
                    self.transaction_abort_interval.as_millis().to_string()
                }
                "transactional.id.expiration.ms" => {
                    self.transactional_id_expiration.as_millis().to_string()
                }
                "producer.id.expiration.ms" => self.producer_id_expiration.as_millis().to_string(),
                "group.consumer.session.timeout.ms" => {
                    self.group_consumer_session_timeout.as_millis().to_string()
                }
                "group.consumer.heartbeat.interval.ms" => self
                    .group_consumer_heartbeat_interval
                    .as_millis()
                    .to_string(),
                "group.consumer.assignors" => self
                    .group_consumer_assignors
                    .iter()
                    .map(|a| a.name())
                    .collect::<Vec<_>>()
                    .join(","),
                other => unreachable!("key {other} missing from Config::render"),
            };
            out.push_str(&format!("{} = {:?}\n", key.name, value));
        }
        out
    }
}

fn flatten(prefix: &str, value: &toml::Value, out: &mut Vec<(String, String)>) {
    match value {
        toml::Value::Table(table) => {
            for (k, v) in table {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        toml::Value::String(s) => out.push((prefix.to_string(), s.clone())),
        toml::Value::Array(items) => {
            let parts: Vec<String> = items
                .iter()
                .map(|item| match item {
                    toml::Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect();
            out.push((prefix.to_string(), parts.join(",")));
        }
        other => out.push((prefix.to_string(), other.to_string())),
    }
}

fn parse<T: std::str::FromStr>(v: &str) -> Result<T, String>
where
    T::Err: std::fmt::Display,
{
    v.parse::<T>().map_err(|e| e.to_string())
}

fn parse_range<T>(v: &str, min: T, max: T) -> Result<T, String>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
    T::Err: std::fmt::Display,
{
    let n: T = parse(v)?;
    if n < min || n > max {
        return Err(format!("must be between {min} and {max}"));
    }
    Ok(n)
}

fn parse_bool(v: &str) -> Result<bool, String> {
    match v {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err("expected true or false".into()),
    }
}

fn parse_level(v: &str) -> Result<slog::Level, String> {
    match v {
        "warn" => Ok(slog::Level::Warning),
        other => other
            .parse::<slog::Level>()
            .map_err(|_| "expected trace, debug, info, warning, error or critical".to_string()),
    }
}

/// Accepts `HOST:PORT` or Kafka's `PLAINTEXT://HOST:PORT` (one listener).
fn parse_listener(v: &str) -> Result<String, String> {
    if v.contains(',') {
        return Err("exactly one listener is supported".into());
    }
    let addr = match v.split_once("://") {
        Some(("PLAINTEXT", rest)) => rest,
        Some((scheme, _)) => return Err(format!("security protocol {scheme} is not supported")),
        None => v,
    };
    let (host, port) = addr.rsplit_once(':').ok_or("expected HOST:PORT")?;
    if host.is_empty() {
        return Err("expected HOST:PORT".into());
    }
    port.parse::<u16>()
        .map_err(|_| format!("bad port {port:?}"))?;
    Ok(addr.to_string())
}

fn parse_voters(v: &str) -> Result<Vec<Voter>, String> {
    let mut voters = Vec::new();
    for item in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (id, addr) = item.split_once('@').ok_or("expected ID@HOST:PORT,...")?;
        let node_id = id
            .parse::<u64>()
            .map_err(|_| format!("bad node id {id:?}"))?;
        addr.parse::<SocketAddr>()
            .map_err(|e| format!("{addr:?}: {e}"))?;
        if voters.iter().any(|v: &Voter| v.node_id == node_id) {
            return Err(format!("node id {node_id} listed twice"));
        }
        voters.push(Voter {
            node_id,
            addr: addr.to_string(),
        });
    }
    Ok(voters)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_kafka_like() {
        let c = Config::default();
        assert_eq!(c.node_id, 1);
        assert_eq!(c.data_dir, PathBuf::from("./sluice-data"));
        assert_eq!(c.listen, "0.0.0.0:9092");
        assert_eq!(c.advertised_addr(), "localhost:9092");
        assert_eq!(c.retention_ms, Some(168 * 3_600_000));
        assert_eq!(c.retention_bytes, None);
        assert_eq!(c.pchannels, 16);
        assert_eq!(c.fsync_policy, FsyncPolicy::Always);
        assert_eq!(c.writeback_bytes, 32 << 20);
        assert!(c.voters.is_empty());
        assert_eq!(c.group_consumer_session_timeout, Duration::from_secs(45));
        assert_eq!(c.group_consumer_heartbeat_interval, Duration::from_secs(5));
        assert_eq!(c.group_heartbeat_hold_max, Duration::from_secs(5));
        assert_eq!(c.group_consumer_assignors, Assignor::ALL.to_vec());
    }

    #[test]
    fn toml_flat_and_table_keys_are_the_same_key() {
        let mut c = Config::default();
        c.apply_toml(
            "\"log.dirs\" = \"/a\"\nnum.partitions = 6\n[log]\nretention.ms = 1000\n",
            "test.toml",
        )
        .unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/a"));
        assert_eq!(c.num_partitions, 6);
        assert_eq!(c.retention_ms, Some(1000));
    }

    #[test]
    fn unknown_key_is_named() {
        let mut c = Config::default();
        let err = c
            .apply_toml("log.dirz = \"/a\"\n", "broker.toml")
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("`log.dirz`") && text.contains("broker.toml"),
            "{text}"
        );
    }

    #[test]
    fn invalid_values_are_named() {
        let mut c = Config::default();
        for (key, value) in [
            ("num.partitions", "0"),
            ("listeners", "SSL://h:1"),
            ("wal.fsync.policy", "sometimes"),
            ("controller.quorum.voters", "1@a"),
            ("default.replication.factor", "3"),
            ("auto.create.topics.enable", "yes"),
            ("group.consumer.assignors", "sticky"),
            ("group.consumer.session.timeout.ms", "0"),
            ("wal.writeback.bytes", "-1"),
            ("group.heartbeat.hold.max.ms", "-1"),
        ] {
            let err = c.set(key, value, "flag").unwrap_err().to_string();
            assert!(err.contains(key), "{err}");
        }
        assert!(Config::default().validate().is_ok());
        c.set("group.consumer.session.timeout.ms", "3000", "flag")
            .unwrap();
        let err = c.validate().unwrap_err().to_string();
        assert!(
            err.contains("group.consumer.heartbeat.interval.ms"),
            "{err}"
        );
    }

    #[test]
    fn env_overrides_use_sluice_prefix() {
        let mut c = Config::default();
        c.apply_env(
            [
                ("SLUICE_LOG_DIRS".to_string(), "/env".to_string()),
                ("SLUICE_WAL_FSYNC_POLICY".to_string(), "never".to_string()),
                ("SLUICE_WAL_WRITEBACK_BYTES".to_string(), "0".to_string()),
                ("HOME".to_string(), "/root".to_string()),
            ]
            .into_iter(),
        )
        .unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/env"));
        assert_eq!(c.fsync_policy, FsyncPolicy::Never);
        assert_eq!(c.writeback_bytes, 0);
    }

    #[test]
    fn voters_and_render_round_trip() {
        let mut c = Config::default();
        c.set(
            "controller.quorum.voters",
            "1@127.0.0.1:9001, 2@127.0.0.1:9002",
            "flag",
        )
        .unwrap();
        assert_eq!(c.voters.len(), 2);
        assert_eq!(
            c.voters[1],
            Voter {
                node_id: 2,
                addr: "127.0.0.1:9002".into()
            }
        );
        let rendered = c.render();
        let mut again = Config::default();
        again.apply_toml(&rendered, "rendered").unwrap();
        assert_eq!(again.render(), rendered);
    }
}
