//! ApiVersions: the versions this broker serves, from the one table in `Broker::versions`.

use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};
use sluice_protocol::RequestHeader;

use crate::broker::Broker;

/// Answers with the served table, and the version to encode the answer with (v0 for a version
/// we do not serve, KIP-511).
pub fn handle(
    broker: &Broker,
    header: &RequestHeader,
    _request: ApiVersionsRequest,
) -> (i16, ApiVersionsResponse) {
    broker.versions.api_versions_response(header.api_version)
}
