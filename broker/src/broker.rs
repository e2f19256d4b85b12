//! The broker process: the state every connection shares, start-up and orderly shutdown.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use slog::{Logger, info};
use tokio::net::TcpListener;
use tokio::sync::watch;

use std::collections::BTreeMap;

use sluice_protocol::{ApiVersionTable, ResponseError};
use sluice_raft::command::{Command, CommandError, CommandResult};

use crate::cluster::Cluster;
use crate::config::Config;
use crate::group::GroupCoordinator;
use crate::logging::Logging;
use crate::metrics::{self, Metrics};
use crate::streaming::StreamingNode;
use crate::{coord, dispatch, server, streaming};

/// State shared by every connection of one broker process.
pub struct Broker {
    /// The effective configuration.
    pub config: Config,
    /// The address clients are told to connect to (resolves port 0 to the bound port).
    pub advertised: (String, i32),
    /// The API versions this broker serves: what the protocol crate decodes, restricted to the
    /// APIs that have a handler.
    pub versions: ApiVersionTable,
    /// The metadata Raft group.
    pub cluster: Arc<Cluster>,
    /// The pchannels this node serves.
    pub streaming: Arc<StreamingNode>,
    /// Producer ids for idempotent producers.
    pub producer_ids: crate::producer_ids::ProducerIds,
    /// Incremental fetch sessions (KIP-227).
    pub fetch_sessions: crate::handler::fetch_session::FetchSessions,
    /// The Prometheus registry and the broker's metrics.
    pub metrics: Arc<Metrics>,
    /// Loggers per component.
    pub logging: Logging,
    /// The consumer-group coordinator.
    pub groups: Arc<GroupCoordinator>,
    /// The transaction coordinator.
    pub txns: crate::txn::TransactionCoordinator,
}

/// Why a topic could not be created.
#[derive(Debug, thiserror::Error)]
pub enum CreateTopicError {
    /// A topic of that name exists.
    #[error("topic already exists")]
    AlreadyExists,
    /// The metadata store refused or could not apply the command.
    #[error("{0}")]
    Metadata(#[from] sluice_raft::Error),
}

impl CreateTopicError {
    /// The Kafka error code for this failure.
    pub fn error_code(&self) -> i16 {
        match self {
            CreateTopicError::AlreadyExists => ResponseError::TopicAlreadyExists.code(),
            CreateTopicError::Metadata(e) => metadata_error_code(e),
        }
    }
}

/// The Kafka error code for a failed metadata operation.
pub fn metadata_error_code(e: &sluice_raft::Error) -> i16 {
    match e {
        sluice_raft::Error::Rejected(CommandError::TopicAlreadyExists(_)) => {
            ResponseError::TopicAlreadyExists.code()
        }
        sluice_raft::Error::Rejected(CommandError::UnknownTopic(_)) => {
            ResponseError::UnknownTopicOrPartition.code()
        }
        sluice_raft::Error::Rejected(CommandError::InvalidPartitions(_)) => {
            ResponseError::InvalidPartitions.code()
        }
        sluice_raft::Error::Rejected(_) => ResponseError::InvalidRequest.code(),
        sluice_raft::Error::NotLeader { .. } => ResponseError::NotController.code(),
        sluice_raft::Error::Timeout(_) => ResponseError::RequestTimedOut.code(),
        _ => ResponseError::UnknownServerError.code(),
    }
}

impl Broker {
    /// This broker's id.
    pub fn node_id(&self) -> i32 {
        self.cluster.node_id()
    }

    /// Counts an error answer in `sluice_request_errors_total`.
    pub fn count_error(&self, api: &str, code: i16) {
        let name = match ResponseError::try_from_code(code) {
            Some(e) => format!("{e:?}"),
            None => code.to_string(),
        };
        self.metrics
            .request_errors
            .with_label_values(&[api, &name])
            .inc();
    }

    /// Creates a topic through the metadata Raft group and returns its id.
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: u32,
        configs: BTreeMap<String, String>,
    ) -> Result<uuid::Uuid, CreateTopicError> {
        let topic_id = uuid::Uuid::new_v4();
        let command = Command::CreateTopic {
            name: name.to_string(),
            topic_id,
            partitions,
            configs,
        };
        match self.cluster.propose(command).await {
            Ok(CommandResult::PartitionsCreated { topic_id, .. }) => Ok(topic_id),
            Ok(_) => Ok(topic_id),
            Err(sluice_raft::Error::Rejected(CommandError::TopicAlreadyExists(_))) => {
                Err(CreateTopicError::AlreadyExists)
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// Runs a broker until SIGTERM or SIGINT, then shuts it down in order: stop accepting, finish
/// in-flight requests, sync and checkpoint storage.
pub async fn run(config: Config, logging: Logging) -> anyhow::Result<()> {
    let log = logging.component("server");
    let listener = TcpListener::bind(&config.listen)
        .await
        .with_context(|| format!("cannot listen on {} (listeners)", config.listen))?;
    let local = listener.local_addr().context("listener address")?;
    let advertised = advertised_address(&config, local)?;

    let metrics = Arc::new(Metrics::new());
    let (shutdown_tx, shutdown_rx) = watch::channel(false);

    // Metadata first: the Raft group, this broker's registration, then the pchannels the
    // coordinator assigns to it.
    let cluster_log = logging.component("cluster");
    let cluster = Arc::new(Cluster::start(&config, logging.component("raft")).await?);
    cluster.register(&advertised, &cluster_log).await?;
    let streaming = Arc::new(StreamingNode::new(
        &config,
        metrics.clone(),
        logging.component("streaming"),
    ));
    let mut background = tokio::task::JoinSet::new();
    background.spawn(
        cluster
            .clone()
            .heartbeat(shutdown_rx.clone(), cluster_log.clone()),
    );
    let expected: Vec<i32> = if config.voters.is_empty() {
        vec![cluster.node_id()]
    } else {
        config
            .voters
            .iter()
            .filter_map(|v| i32::try_from(v.node_id).ok())
            .collect()
    };
    background.spawn(coord::run(
        cluster.clone(),
        expected,
        shutdown_rx.clone(),
        logging.component("coordinator"),
    ));
    streaming::assignment::wait_until_served(
        &cluster,
        &streaming,
        &config,
        &logging.component("streaming"),
    )
    .await;
    background.spawn(streaming::assignment::follow(
        cluster.clone(),
        streaming.clone(),
        config.clone(),
        shutdown_rx.clone(),
        logging.component("streaming"),
    ));
    background.spawn(streaming::retention_loop(
        streaming.clone(),
        shutdown_rx.clone(),
        logging.component("retention"),
    ));

    let mut tasks = tokio::task::JoinSet::new();
    if !config.metrics_listen.is_empty() {
        let metrics_listener = TcpListener::bind(&config.metrics_listen)
            .await
            .with_context(|| {
                format!(
                    "cannot listen on {} (metrics.listen)",
                    config.metrics_listen
                )
            })?;
        let metrics_log = logging.component("metrics");
        let addr = metrics_listener
            .local_addr()
            .context("metrics listener address")?;
        info!(metrics_log, "metrics endpoint listening"; "addr" => addr.to_string(), "path" => "/metrics");
        tasks.spawn(metrics::serve(
            metrics_listener,
            metrics.clone(),
            shutdown_rx.clone(),
            metrics_log,
        ));
    }

    let config_delay = config.group_initial_rebalance_delay;
    let txn_max_timeout = config.transaction_max_timeout;
    let txn_expiration = config.transactional_id_expiration;
    let broker = Arc::new(Broker {
        config,
        advertised,
        versions: ApiVersionTable::for_keys(dispatch::HANDLED_APIS),
        cluster: cluster.clone(),
        streaming: streaming.clone(),
        producer_ids: Default::default(),
        fetch_sessions: Default::default(),
        metrics,
        logging: logging.clone(),
        groups: Arc::new(GroupCoordinator::new(
            config_delay,
            logging.component("group"),
        )),
        txns: crate::txn::TransactionCoordinator::new(
            txn_max_timeout,
            txn_expiration,
            logging.component("txn"),
        ),
    });
    crate::group::coordinator::ensure_offsets_topic(&broker, &logging.component("group")).await;
    background.spawn(broker.groups.clone().run_expiry(shutdown_rx.clone()));
    background.spawn(crate::group::expiration::run(
        broker.clone(),
        shutdown_rx.clone(),
        logging.component("group"),
    ));
    let loader = broker.clone();
    background.spawn(async move { loader.groups.load_local(&loader).await });
    crate::txn::coordinator::ensure_txn_topic(&broker, &logging.component("txn")).await;
    background.spawn(crate::txn::TransactionCoordinator::run_expiry(
        broker.clone(),
        broker.config.transaction_abort_interval,
        shutdown_rx.clone(),
    ));
    let loader = broker.clone();
    background.spawn(async move { loader.txns.load_local(&loader).await });
    info!(log, "kafka listener accepting";
        "addr" => local.to_string(),
        "advertised" => format!("{}:{}", broker.advertised.0, broker.advertised.1),
        "data_dir" => broker.config.data_dir.display().to_string());
    tasks.spawn(crate::observe::refresh_loop(
        broker.clone(),
        shutdown_rx.clone(),
    ));
    tasks.spawn(server::serve(
        listener,
        broker.clone(),
        shutdown_rx,
        log.clone(),
    ));

    wait_for_signal(&log).await;
    let _ = shutdown_tx.send(true);
    // Connections finish their in-flight requests first; then the pchannels drain, sync and
    // checkpoint; the Raft peer stops last.
    while tasks.join_next().await.is_some() {}
    while background.join_next().await.is_some() {}
    let node = streaming.clone();
    let _ = tokio::task::spawn_blocking(move || node.close_all()).await;
    cluster.shutdown().await;
    info!(log, "shutdown complete");
    Ok(())
}

fn advertised_address(config: &Config, local: SocketAddr) -> anyhow::Result<(String, i32)> {
    let advertised = if config.advertise.is_empty() {
        let host = match local.ip() {
            ip if ip.is_unspecified() => "localhost".to_string(),
            ip => ip.to_string(),
        };
        return Ok((host, i32::from(local.port())));
    } else {
        config.advertise.clone()
    };
    let (host, port) = advertised
        .rsplit_once(':')
        .context("advertised.listeners must be HOST:PORT")?;
    let port: u16 = port.parse().context("advertised.listeners port")?;
    Ok((host.to_string(), i32::from(port)))
}

async fn wait_for_signal(log: &Logger) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("install SIGINT handler");
    let name = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    info!(log, "shutting down"; "signal" => name);
}
