//! Heartbeat: keeps a member's session alive and tells it when the group rebalances. A member
//! of a Stable group is answered when something happens rather than at once (see
//! `group/heartbeat_hold.rs`).

use std::time::Instant;

use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse};
use sluice_protocol::{RequestHeader, ResponseError};

use crate::broker::Broker;
use crate::dispatch::NextRequest;
use crate::group::heartbeat_hold;

/// Answers a Heartbeat request; with `next_request`, a Heartbeat to a Stable group may be held
/// until the connection's next request.
pub async fn handle(
    broker: &Broker,
    _header: &RequestHeader,
    request: HeartbeatRequest,
    next_request: Option<NextRequest>,
) -> HeartbeatResponse {
    let group_id = request.group_id.to_string();
    let member_id = request.member_id.as_str();
    let group_instance_id = request.group_instance_id.as_deref();
    let code = match broker.groups.home(broker, &group_id).await {
        Err(code) => code,
        Ok(_) => match broker.groups.get(&group_id) {
            None => ResponseError::UnknownMemberId.code(),
            Some(handle) => {
                let (code, hold) = {
                    let mut g = handle.group.lock();
                    let code = g.heartbeat(
                        member_id,
                        group_instance_id,
                        request.generation_id,
                        Instant::now(),
                    );
                    let max = broker.config.group_heartbeat_hold_max;
                    let hold = match &next_request {
                        Some(_) if code == 0 => g.hold_heartbeat(member_id, max),
                        _ => None,
                    };
                    (code, hold)
                };
                match (hold, next_request) {
                    (Some(hold), Some(next)) => {
                        let _held = GaugeGuard::inc(&broker.metrics.heartbeats_held);
                        heartbeat_hold::wait(
                            &handle.group,
                            hold,
                            member_id,
                            group_instance_id,
                            request.generation_id,
                            next.arrived(),
                        )
                        .await
                    }
                    _ => code,
                }
            }
        },
    };
    if code != 0 {
        broker.count_error("Heartbeat", code);
    }
    HeartbeatResponse::default().with_error_code(code)
}

/// Counts one held Heartbeat in a gauge while alive.
struct GaugeGuard<'a>(&'a prometheus::IntGauge);

impl<'a> GaugeGuard<'a> {
    fn inc(gauge: &'a prometheus::IntGauge) -> Self {
        gauge.inc();
        GaugeGuard(gauge)
    }
}

impl Drop for GaugeGuard<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}
