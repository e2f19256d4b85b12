//! The one `match` on the API key: decoded request in, encoded response parts out.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::Encodable;
use slog::{Logger, error};
use sluice_protocol::response::encode_response_to;
use sluice_protocol::{Request, RequestHeader, encode_response, encode_response_spliced};

use kafka_protocol::messages::{HeartbeatRequest, OffsetCommitRequest};
use tokio::sync::{oneshot, watch};

use crate::broker::Broker;
use crate::group::commit_queue::CommitTurn;
use crate::handler;

/// The APIs this broker answers; the ApiVersions table is built from this list, so a client is
/// never offered an API without a handler below.
pub const HANDLED_APIS: &[ApiKey] = &[
    ApiKey::ApiVersions,
    ApiKey::Metadata,
    ApiKey::DescribeCluster,
    ApiKey::DescribeQuorum,
    ApiKey::CreateTopics,
    ApiKey::Produce,
    ApiKey::Fetch,
    ApiKey::ListOffsets,
    ApiKey::OffsetForLeaderEpoch,
    ApiKey::DeleteTopics,
    ApiKey::CreatePartitions,
    ApiKey::DeleteRecords,
    ApiKey::DescribeConfigs,
    ApiKey::AlterConfigs,
    ApiKey::IncrementalAlterConfigs,
    ApiKey::DescribeLogDirs,
    ApiKey::FindCoordinator,
    ApiKey::JoinGroup,
    ApiKey::SyncGroup,
    ApiKey::Heartbeat,
    ApiKey::LeaveGroup,
    ApiKey::OffsetCommit,
    ApiKey::OffsetFetch,
    ApiKey::ListGroups,
    ApiKey::DescribeGroups,
    ApiKey::DeleteGroups,
    ApiKey::OffsetDelete,
    ApiKey::InitProducerId,
    ApiKey::AddPartitionsToTxn,
    ApiKey::AddOffsetsToTxn,
    ApiKey::EndTxn,
    ApiKey::TxnOffsetCommit,
    ApiKey::WriteTxnMarkers,
    ApiKey::DescribeTransactions,
    ApiKey::ListTransactions,
    ApiKey::ConsumerGroupHeartbeat,
    ApiKey::ConsumerGroupDescribe,
];

/// The API's name as a metric label.
pub fn api_name(api_key: ApiKey) -> &'static str {
    match api_key {
        ApiKey::ApiVersions => "ApiVersions",
        ApiKey::Metadata => "Metadata",
        ApiKey::DescribeCluster => "DescribeCluster",
        ApiKey::DescribeQuorum => "DescribeQuorum",
        ApiKey::CreateTopics => "CreateTopics",
        ApiKey::Produce => "Produce",
        ApiKey::Fetch => "Fetch",
        ApiKey::ListOffsets => "ListOffsets",
        ApiKey::OffsetForLeaderEpoch => "OffsetForLeaderEpoch",
        ApiKey::DeleteTopics => "DeleteTopics",
        ApiKey::CreatePartitions => "CreatePartitions",
        ApiKey::DeleteRecords => "DeleteRecords",
        ApiKey::DescribeConfigs => "DescribeConfigs",
        ApiKey::AlterConfigs => "AlterConfigs",
        ApiKey::IncrementalAlterConfigs => "IncrementalAlterConfigs",
        ApiKey::DescribeLogDirs => "DescribeLogDirs",
        ApiKey::FindCoordinator => "FindCoordinator",
        ApiKey::JoinGroup => "JoinGroup",
        ApiKey::SyncGroup => "SyncGroup",
        ApiKey::Heartbeat => "Heartbeat",
        ApiKey::LeaveGroup => "LeaveGroup",
        ApiKey::OffsetCommit => "OffsetCommit",
        ApiKey::OffsetFetch => "OffsetFetch",
        ApiKey::ListGroups => "ListGroups",
        ApiKey::DescribeGroups => "DescribeGroups",
        ApiKey::DeleteGroups => "DeleteGroups",
        ApiKey::OffsetDelete => "OffsetDelete",
        ApiKey::InitProducerId => "InitProducerId",
        ApiKey::AddPartitionsToTxn => "AddPartitionsToTxn",
        ApiKey::AddOffsetsToTxn => "AddOffsetsToTxn",
        ApiKey::EndTxn => "EndTxn",
        ApiKey::TxnOffsetCommit => "TxnOffsetCommit",
        ApiKey::WriteTxnMarkers => "WriteTxnMarkers",
        ApiKey::DescribeTransactions => "DescribeTransactions",
        ApiKey::ListTransactions => "ListTransactions",
        ApiKey::ConsumerGroupHeartbeat => "ConsumerGroupHeartbeat",
        ApiKey::ConsumerGroupDescribe => "ConsumerGroupDescribe",
        _ => "other",
    }
}

/// What the connection does once a request is done.
pub enum Reply {
    /// Write these bytes (one response frame, possibly in several parts).
    Send(Vec<Bytes>),
    /// No response is due (acks=0).
    Nothing,
    /// Close the connection after the responses before this one.
    Close,
}

/// A request after the part of its work that must happen in arrival order.
pub enum Started {
    /// A produce whose batches are already queued on their pchannels.
    Produce(handler::produce::PendingProduce),
    /// An OffsetCommit with its place among the connection's commits.
    OffsetCommit(OffsetCommitRequest, CommitTurn),
    /// A Heartbeat, which may be held until the connection's next request.
    Heartbeat(HeartbeatRequest, NextRequest),
    /// Any other request, not started yet.
    Other(Request),
}

/// What the in-order part of one connection's requests carries from a request to the next.
pub struct Arrivals {
    /// Completes when the connection's latest OffsetCommit joined its group's commit queue.
    last_commit: Option<oneshot::Receiver<()>>,
    /// Counts the connection's requests; dropped when the connection stops reading.
    count: watch::Sender<u64>,
}

impl Default for Arrivals {
    fn default() -> Self {
        Arrivals {
            last_commit: None,
            count: watch::channel(0).0,
        }
    }
}

impl Arrivals {
    /// A request arrived (before it is decoded, so requests refused later count too).
    pub fn arrived(&mut self) {
        // Only held requests wait for this, and their receivers are made on this same task
        // (in `start`): without one, nothing needs waking.
        if self.count.receiver_count() > 0 {
            self.count.send_modify(|n| *n += 1);
        }
    }

    fn next_request(&self) -> NextRequest {
        NextRequest(self.count.subscribe())
    }
}

/// Completes when the connection receives a request after this one, or stops reading (the
/// client closed it, a framing error, broker shutdown): a request held open (a Heartbeat, see
/// `group/heartbeat_hold.rs`) must then be answered, since the responses behind it wait for it.
pub struct NextRequest(watch::Receiver<u64>);

impl NextRequest {
    /// Waits for the next request.
    pub async fn arrived(mut self) {
        // An error means the connection stopped reading: nothing will follow.
        let _ = self.0.changed().await;
    }
}

/// The in-order part of a request, run on the connection's reader before the next request is
/// read: a produce's appends are queued here so they reach the log in request order, and an
/// OffsetCommit takes its turn after the connection's previous commit.
pub fn start(
    broker: &Broker,
    header: &RequestHeader,
    request: Request,
    log: &Logger,
    arrivals: &mut Arrivals,
) -> Started {
    match request {
        Request::Produce(r) => Started::Produce(handler::produce::submit(broker, header, r, log)),
        Request::OffsetCommit(r) => {
            Started::OffsetCommit(r, CommitTurn::after(&mut arrivals.last_commit))
        }
        Request::Heartbeat(r) => Started::Heartbeat(r, arrivals.next_request()),
        other => Started::Other(other),
    }
}

/// Runs one started request and encodes its response.
pub async fn dispatch(
    broker: &Arc<Broker>,
    header: &RequestHeader,
    started: Started,
    peer: std::net::SocketAddr,
    log: &Logger,
) -> Reply {
    let mut buf = BytesMut::new();
    let (request, commit_turn, next_request) = match started {
        Started::Produce(pending) => {
            return match pending.finish(broker).await {
                Ok(Some(body)) => {
                    finish(log, header, encode(&mut buf, header, &body).map(|()| buf))
                }
                Ok(None) => Reply::Nothing,
                // acks=0 has no response to carry an error: close, so the client notices
                // and refreshes its metadata (as Kafka does).
                Err(()) => Reply::Close,
            };
        }
        Started::OffsetCommit(r, turn) => (Request::OffsetCommit(r), turn, None),
        Started::Heartbeat(r, next) => (Request::Heartbeat(r), CommitTurn::default(), Some(next)),
        Started::Other(request) => (request, CommitTurn::default(), None),
    };
    let encoded = match request {
        Request::ApiVersions(r) => {
            let (version, body) = handler::api_versions::handle(broker, header, r);
            encode_response_to(
                &mut buf,
                ApiKey::ApiVersions,
                version,
                header.correlation_id,
                &body,
            )
        }
        Request::Metadata(r) => encode(
            &mut buf,
            header,
            &handler::metadata::handle(broker, header, r, log).await,
        ),
        Request::DescribeCluster(r) => encode(
            &mut buf,
            header,
            &handler::describe_cluster::handle(broker, header, r),
        ),
        Request::DescribeQuorum(r) => encode(
            &mut buf,
            header,
            &handler::describe_quorum::handle(broker, header, r, log).await,
        ),
        Request::CreateTopics(r) => encode(
            &mut buf,
            header,
            &handler::create_topics::handle(broker, header, r, log).await,
        ),
        Request::Fetch(r) => {
            let (body, splices) = handler::fetch::handle(broker, header, r).await;
            return match encode_response_spliced(header, &body, &splices) {
                Ok(parts) => Reply::Send(parts.parts),
                Err(e) => {
                    error!(log, "encoding a response failed"; "api" => "Fetch", "error" => %e);
                    Reply::Close
                }
            };
        }
        Request::ListOffsets(r) => encode(
            &mut buf,
            header,
            &handler::list_offsets::handle(broker, header, r),
        ),
        Request::OffsetForLeaderEpoch(r) => encode(
            &mut buf,
            header,
            &handler::offset_for_leader_epoch::handle(broker, header, r),
        ),
        Request::DeleteTopics(r) => encode(
            &mut buf,
            header,
            &handler::delete_topics::handle(broker, header, r, log).await,
        ),
        Request::CreatePartitions(r) => encode(
            &mut buf,
            header,
            &handler::create_partitions::handle(broker, header, r, log).await,
        ),
        Request::DeleteRecords(r) => encode(
            &mut buf,
            header,
            &handler::delete_records::handle(broker, header, r, log),
        ),
        Request::DescribeConfigs(r) => encode(
            &mut buf,
            header,
            &handler::describe_configs::handle(broker, header, r),
        ),
        Request::AlterConfigs(r) => encode(
            &mut buf,
            header,
            &handler::alter_configs::handle(broker, header, r, log).await,
        ),
        Request::IncrementalAlterConfigs(r) => encode(
            &mut buf,
            header,
            &handler::alter_configs::handle_incremental(broker, header, r, log).await,
        ),
        Request::DescribeLogDirs(r) => encode(
            &mut buf,
            header,
            &handler::describe_log_dirs::handle(broker, header, r),
        ),
        Request::FindCoordinator(r) => encode(
            &mut buf,
            header,
            &handler::find_coordinator::handle(broker, header, r),
        ),
        Request::JoinGroup(r) => encode(
            &mut buf,
            header,
            &handler::join_group::handle(broker, header, r, peer, log).await,
        ),
        Request::SyncGroup(r) => encode(
            &mut buf,
            header,
            &handler::sync_group::handle(broker, header, r, log).await,
        ),
        Request::Heartbeat(r) => encode(
            &mut buf,
            header,
            &handler::heartbeat::handle(broker, header, r, next_request).await,
        ),
        Request::LeaveGroup(r) => encode(
            &mut buf,
            header,
            &handler::leave_group::handle(broker, header, r).await,
        ),
        Request::OffsetCommit(r) => encode(
            &mut buf,
            header,
            &handler::offset_commit::handle(broker, header, r, commit_turn).await,
        ),
        Request::OffsetFetch(r) => encode(
            &mut buf,
            header,
            &handler::offset_fetch::handle(broker, header, r).await,
        ),
        Request::ListGroups(r) => encode(
            &mut buf,
            header,
            &handler::list_groups::handle(broker, header, r).await,
        ),
        Request::DescribeGroups(r) => encode(
            &mut buf,
            header,
            &handler::describe_groups::handle(broker, header, r).await,
        ),
        Request::DeleteGroups(r) => encode(
            &mut buf,
            header,
            &handler::delete_groups::handle(broker, header, r, log).await,
        ),
        Request::OffsetDelete(r) => encode(
            &mut buf,
            header,
            &handler::offset_delete::handle(broker, header, r).await,
        ),
        Request::InitProducerId(r) => encode(
            &mut buf,
            header,
            &handler::init_producer_id::handle(broker, header, r, log).await,
        ),
        Request::AddPartitionsToTxn(r) => encode(
            &mut buf,
            header,
            &handler::add_partitions_to_txn::handle(broker, header, r).await,
        ),
        Request::AddOffsetsToTxn(r) => encode(
            &mut buf,
            header,
            &handler::add_offsets_to_txn::handle(broker, header, r).await,
        ),
        Request::EndTxn(r) => encode(
            &mut buf,
            header,
            &handler::end_txn::handle(broker, header, r).await,
        ),
        Request::TxnOffsetCommit(r) => encode(
            &mut buf,
            header,
            &handler::txn_offset_commit::handle(broker, header, r).await,
        ),
        Request::WriteTxnMarkers(r) => encode(
            &mut buf,
            header,
            &handler::write_txn_markers::handle(broker, header, r).await,
        ),
        Request::DescribeTransactions(r) => encode(
            &mut buf,
            header,
            &handler::describe_transactions::handle(broker, header, r).await,
        ),
        Request::ListTransactions(r) => encode(
            &mut buf,
            header,
            &handler::list_transactions::handle(broker, header, r).await,
        ),
        Request::ConsumerGroupHeartbeat(r) => encode(
            &mut buf,
            header,
            &handler::consumer_group_heartbeat::handle(broker, header, r, peer).await,
        ),
        Request::ConsumerGroupDescribe(r) => encode(
            &mut buf,
            header,
            &handler::consumer_group_describe::handle(broker, header, r).await,
        ),
        other => {
            // Unreachable while HANDLED_APIS builds the version table: decode refuses the rest.
            // (A unit test below checks every listed API has an arm.)
            error!(log, "request without a handler"; "api_key" => ?other.api_key());
            return Reply::Close;
        }
    };
    finish(log, header, encoded.map(|()| buf))
}

fn finish(
    log: &Logger,
    header: &RequestHeader,
    encoded: Result<BytesMut, sluice_protocol::EncodeError>,
) -> Reply {
    match encoded {
        Ok(buf) => Reply::Send(vec![buf.freeze()]),
        Err(e) => {
            error!(log, "encoding a response failed"; "api_key" => ?header.api_key, "version" => header.api_version, "error" => %e);
            Reply::Close
        }
    }
}

fn encode<M: Encodable>(
    buf: &mut BytesMut,
    header: &RequestHeader,
    body: &M,
) -> Result<(), sluice_protocol::EncodeError> {
    encode_response(buf, header, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_handled_api_is_served_and_named() {
        let table = sluice_protocol::ApiVersionTable::for_keys(HANDLED_APIS);
        for key in HANDLED_APIS {
            assert!(
                table.get(*key).is_some(),
                "{key:?} is handled but the protocol crate cannot decode it"
            );
            assert_ne!(api_name(*key), "other", "{key:?} has no metric name");
        }
        assert_eq!(table.entries().len(), HANDLED_APIS.len());
    }

    #[tokio::test]
    async fn a_held_request_is_released_by_the_next_arrival_or_the_end_of_the_connection() {
        use std::time::Duration;
        let mut arrivals = Arrivals::default();
        arrivals.arrived();
        let first = arrivals.next_request().arrived();
        tokio::pin!(first);
        let wait = Duration::from_millis(20);
        assert!(
            tokio::time::timeout(wait, &mut first).await.is_err(),
            "no request after it yet"
        );
        arrivals.arrived();
        assert!(tokio::time::timeout(wait, first).await.is_ok());

        let last = arrivals.next_request().arrived();
        drop(arrivals);
        assert!(tokio::time::timeout(wait, last).await.is_ok());
    }
}
