//! The broker's Prometheus registry and its `/metrics` HTTP endpoint.
//!
//! Names are prefixed `sluice_` and follow Kafka's where Kafka has one.

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode, body::Incoming, service::service_fn};
use log_store::{PChannel, Position};
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use slog::{Logger, warn};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// `mode` of a fetch read that began in the active segment.
pub const READ_TAILING: &str = "tailing";
/// `mode` of a fetch read that began in a sealed segment.
pub const READ_CATCHUP: &str = "catchup";

/// Every metric the broker exports, registered in one registry.
pub struct Metrics {
    /// The registry served at `/metrics`.
    pub registry: Registry,
    /// Requests received, by API name.
    pub requests: IntCounterVec,
    /// Requests answered with a top-level or partition error, by API name and error name.
    pub request_errors: IntCounterVec,
    /// Time from a request's arrival to its response being queued, by API name.
    pub request_latency: HistogramVec,
    /// Requests that could not be decoded or were refused before dispatch, by reason.
    pub rejected_requests: IntCounterVec,
    /// Open client connections.
    pub connections_active: IntGauge,
    /// Client connections accepted since start.
    pub connections_total: IntCounter,
    /// Connections refused because `max.connections` was reached.
    pub connections_refused: IntCounter,
    /// Records appended, by topic (Kafka's MessagesInPerSec).
    pub messages_in: IntCounterVec,
    /// Record-batch bytes appended, by topic (Kafka's BytesInPerSec).
    pub bytes_in: IntCounterVec,
    /// Record-batch bytes returned by fetches, by topic (Kafka's BytesOutPerSec).
    pub bytes_out: IntCounterVec,
    /// Incremental fetch sessions open (KIP-227).
    pub fetch_sessions: IntGauge,
    /// Classic-group Heartbeats held open (see `group/heartbeat_hold.rs`).
    pub heartbeats_held: IntGauge,
    /// Fetch requests by kind: `full` (no session), `session_full` (opens a session),
    /// `incremental`.
    pub fetch_requests: IntCounterVec,
    /// Reads of the log that fetches made and that returned records, by where they began:
    /// `tailing` in the active segment (mapped, indexed in memory), `catchup` in a sealed one.
    pub fetch_reads: IntCounterVec,
    /// Record-batch bytes those reads returned, by the same mode.
    pub fetch_read_bytes: IntCounterVec,
    /// Log end offset minus committed offset, per group and partition, for the groups this
    /// broker coordinates.
    pub consumergroup_lag: IntGaugeVec,
    /// Committed offset per group and partition, for the groups this broker coordinates.
    pub consumergroup_current_offset: IntGaugeVec,
    /// The metadata Raft group as this node sees it.
    pub raft_term: IntGauge,
    /// The Raft leader's node id (-1 while unknown).
    pub raft_leader: IntGauge,
    /// The applied index (the metadata version).
    pub raft_applied_index: IntGauge,
    /// Log end offset of each partition served here.
    pub log_end_offset: IntGaugeVec,
    /// Log start offset of each partition served here.
    pub log_start_offset: IntGaugeVec,
    /// Bytes of each partition served here.
    pub partition_bytes: IntGaugeVec,
    /// Bytes written by one group commit, by pchannel.
    pub group_commit_bytes: HistogramVec,
    /// Time to write one group commit into the segment, by pchannel.
    pub append_latency: HistogramVec,
    /// Time of the fsync that makes a group commit durable, by pchannel.
    pub fsync_latency: HistogramVec,
}

impl Metrics {
    /// Creates and registers every metric, including the process collector.
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new("sluice_requests_total", "Kafka requests received, by API"),
            &["api"],
        )
        .expect("valid metric");
        let request_errors = IntCounterVec::new(
            Opts::new(
                "sluice_request_errors_total",
                "Kafka requests answered with an error code, by API and error",
            ),
            &["api", "error"],
        )
        .expect("valid metric");
        let request_latency = HistogramVec::new(
            HistogramOpts::new(
                "sluice_request_latency_seconds",
                "Time from a request's arrival to its response, by API",
            )
            .buckets(vec![
                0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05,
                0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["api"],
        )
        .expect("valid metric");
        let rejected_requests = IntCounterVec::new(
            Opts::new(
                "sluice_rejected_requests_total",
                "Requests refused before dispatch (malformed, oversized, unsupported), by reason",
            ),
            &["reason"],
        )
        .expect("valid metric");
        let connections_active =
            IntGauge::new("sluice_connections_active", "Open client connections")
                .expect("valid metric");
        let connections_total =
            IntCounter::new("sluice_connections_total", "Client connections accepted")
                .expect("valid metric");
        let connections_refused = IntCounter::new(
            "sluice_connections_refused_total",
            "Client connections refused at max.connections",
        )
        .expect("valid metric");
        let messages_in = IntCounterVec::new(
            Opts::new(
                "sluice_broker_topic_messages_in_total",
                "Records appended, by topic",
            ),
            &["topic"],
        )
        .expect("valid metric");
        let bytes_in = IntCounterVec::new(
            Opts::new(
                "sluice_broker_topic_bytes_in_total",
                "Record-batch bytes appended, by topic",
            ),
            &["topic"],
        )
        .expect("valid metric");
        let bytes_out = IntCounterVec::new(
            Opts::new(
                "sluice_broker_topic_bytes_out_total",
                "Record-batch bytes fetched, by topic",
            ),
            &["topic"],
        )
        .expect("valid metric");
        let fetch_sessions = IntGauge::new(
            "sluice_fetch_sessions_open",
            "Incremental fetch sessions open",
        )
        .expect("valid metric");
        let heartbeats_held = IntGauge::new(
            "sluice_group_heartbeats_held",
            "Consumer-group Heartbeats held open until the group rebalances or the member sends \
             its next request",
        )
        .expect("valid metric");
        let raft_term = IntGauge::new(
            "sluice_raft_term",
            "Current term of the metadata Raft group",
        )
        .expect("valid metric");
        let raft_leader = IntGauge::new(
            "sluice_raft_leader_id",
            "Node id of the metadata Raft leader, -1 while unknown",
        )
        .expect("valid metric");
        let raft_applied_index = IntGauge::new(
            "sluice_raft_applied_index",
            "Applied index of the metadata Raft group (metadata version)",
        )
        .expect("valid metric");
        let partition_gauge = |name: &str, help: &str| {
            IntGaugeVec::new(Opts::new(name, help), &["topic", "partition"]).expect("valid metric")
        };
        let log_end_offset = partition_gauge(
            "sluice_partition_log_end_offset",
            "Log end offset of a partition served here",
        );
        let log_start_offset = partition_gauge(
            "sluice_partition_log_start_offset",
            "Log start offset of a partition served here",
        );
        let partition_bytes = partition_gauge(
            "sluice_partition_bytes",
            "Record-batch bytes of a partition served here",
        );
        let fetch_requests = IntCounterVec::new(
            Opts::new(
                "sluice_fetch_requests_total",
                "Fetch requests by kind (full, session_full, incremental)",
            ),
            &["kind"],
        )
        .expect("valid metric");
        let fetch_reads = IntCounterVec::new(
            Opts::new(
                "sluice_fetch_reads_total",
                "Log reads by fetches that returned records, by where they began: tailing (active segment) or catchup (sealed segment)",
            ),
            &["mode"],
        )
        .expect("valid metric");
        let fetch_read_bytes = IntCounterVec::new(
            Opts::new(
                "sluice_fetch_read_bytes_total",
                "Record-batch bytes returned by log reads of fetches, by mode (tailing, catchup)",
            ),
            &["mode"],
        )
        .expect("valid metric");
        // Both modes exist from the start, so rates and ratios are defined before any read.
        for mode in [READ_TAILING, READ_CATCHUP] {
            fetch_reads.with_label_values(&[mode]);
            fetch_read_bytes.with_label_values(&[mode]);
        }
        let group_gauge = |name: &str, help: &str| {
            IntGaugeVec::new(
                Opts::new(name, help),
                &["consumergroup", "topic", "partition"],
            )
            .expect("valid metric")
        };
        let consumergroup_lag = group_gauge(
            "sluice_consumergroup_lag",
            "Log end offset minus the group's committed offset, reported by the group's coordinator",
        );
        let consumergroup_current_offset = group_gauge(
            "sluice_consumergroup_current_offset",
            "The group's committed offset, reported by the group's coordinator",
        );
        let group_commit_bytes = HistogramVec::new(
            HistogramOpts::new(
                "sluice_pchannel_group_commit_bytes",
                "Bytes written by one group commit",
            )
            .buckets(prometheus::exponential_buckets(256.0, 4.0, 10).expect("valid buckets")),
            &["pchannel"],
        )
        .expect("valid metric");
        let append_latency = HistogramVec::new(
            HistogramOpts::new(
                "sluice_pchannel_append_seconds",
                "Time to write one group commit into the segment",
            )
            .buckets(prometheus::exponential_buckets(0.000_01, 3.0, 12).expect("valid buckets")),
            &["pchannel"],
        )
        .expect("valid metric");
        let fsync_latency = HistogramVec::new(
            HistogramOpts::new(
                "sluice_pchannel_fsync_seconds",
                "Time of the fsync that makes a group commit durable",
            )
            .buckets(prometheus::exponential_buckets(0.000_05, 3.0, 12).expect("valid buckets")),
            &["pchannel"],
        )
        .expect("valid metric");
        for collector in [
            Box::new(messages_in.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(bytes_in.clone()),
            Box::new(bytes_out.clone()),
            Box::new(fetch_sessions.clone()),
            Box::new(heartbeats_held.clone()),
            Box::new(raft_term.clone()),
            Box::new(raft_leader.clone()),
            Box::new(raft_applied_index.clone()),
            Box::new(log_end_offset.clone()),
            Box::new(log_start_offset.clone()),
            Box::new(partition_bytes.clone()),
            Box::new(fetch_requests.clone()),
            Box::new(fetch_reads.clone()),
            Box::new(fetch_read_bytes.clone()),
            Box::new(consumergroup_lag.clone()),
            Box::new(consumergroup_current_offset.clone()),
            Box::new(group_commit_bytes.clone()),
            Box::new(append_latency.clone()),
            Box::new(fsync_latency.clone()),
            Box::new(requests.clone()),
            Box::new(request_errors.clone()),
            Box::new(request_latency.clone()),
            Box::new(rejected_requests.clone()),
            Box::new(connections_active.clone()),
            Box::new(connections_total.clone()),
            Box::new(connections_refused.clone()),
            Box::new(prometheus::process_collector::ProcessCollector::new(
                std::process::id() as i32,
                "sluice",
            )),
        ] {
            registry
                .register(collector)
                .expect("metric registered once");
        }
        Metrics {
            registry,
            requests,
            request_errors,
            request_latency,
            rejected_requests,
            connections_active,
            connections_total,
            connections_refused,
            messages_in,
            bytes_in,
            bytes_out,
            fetch_sessions,
            heartbeats_held,
            fetch_requests,
            fetch_reads,
            fetch_read_bytes,
            consumergroup_lag,
            consumergroup_current_offset,
            raft_term,
            raft_leader,
            raft_applied_index,
            log_end_offset,
            log_start_offset,
            partition_bytes,
            group_commit_bytes,
            append_latency,
            fsync_latency,
        }
    }

    /// Counts one log read of a fetch that returned `bytes` starting at `position` of `log`:
    /// tailing when that lies in the active segment, catch-up when in a sealed one.
    pub fn count_fetch_read(&self, log: &PChannel, position: Position, bytes: usize) {
        let mode = match log.active_segment_base() {
            Some(base) if position >= base => READ_TAILING,
            _ => READ_CATCHUP,
        };
        self.fetch_reads.with_label_values(&[mode]).inc();
        self.fetch_read_bytes
            .with_label_values(&[mode])
            .inc_by(bytes as u64);
    }

    /// The registry in Prometheus' text exposition format.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 * 1024);
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding into a Vec cannot fail");
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// Serves `GET /metrics` on `listener` until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    metrics: std::sync::Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
    log: Logger,
) {
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    warn!(log, "metrics accept failed"; "error" => %e);
                    continue;
                }
            },
            _ = shutdown.wait_for(|stop| *stop) => return,
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let metrics = metrics.clone();
                async move { Ok::<_, Infallible>(respond(&req, &metrics)) }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .await;
        });
    }
}

fn respond(req: &Request<Incoming>, metrics: &Metrics) -> Response<Full<Bytes>> {
    if req.uri().path() != "/metrics" {
        return Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body(Full::new(Bytes::from_static(b"try /metrics\n")))
            .expect("static response");
    }
    Response::builder()
        .header("content-type", "text/plain; version=0.0.4")
        .body(Full::new(Bytes::from(metrics.render())))
        .expect("static response")
}
