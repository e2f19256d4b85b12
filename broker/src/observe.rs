//! Gauges that describe state rather than count events — the metadata Raft group, the
//! offsets of every partition served here, and the lag of the consumer groups coordinated
//! here — refreshed periodically from their sources.

use std::sync::Arc;
use std::time::Duration;

use log_store::VChannelId;
use tokio::sync::watch;

use crate::broker::Broker;
use crate::handler::{local_wal, route};
use crate::lag::GroupLag;

/// How often the gauges are refreshed.
const REFRESH: Duration = Duration::from_secs(2);

/// Refreshes the state gauges until `shutdown` turns true.
pub async fn refresh_loop(broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    let mut ticker = tokio::time::interval(REFRESH);
    let mut lag = GroupLag::default();
    let log = broker.logging.component("metrics");
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        refresh(&broker);
        // Lag may ask other brokers for log end offsets: shutdown does not wait for them.
        tokio::select! {
            _ = lag.refresh(&broker, &log) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}

/// Sets every state gauge from the current state.
pub fn refresh(broker: &Broker) {
    let m = &broker.metrics;
    let status = broker.cluster.raft_status();
    m.raft_term.set(status.term as i64);
    m.raft_leader.set(status.leader.map_or(-1, |l| l as i64));
    m.raft_applied_index.set(status.applied as i64);

    let state = broker.cluster.state();
    // Partitions of deleted topics or moved pchannels disappear from the scrape.
    m.log_end_offset.reset();
    m.log_start_offset.reset();
    m.partition_bytes.reset();
    for (name, topic) in state.topics.iter() {
        for index in 0..topic.partitions.len() as i32 {
            let Ok(r) = route(&state, name, index) else {
                continue;
            };
            let Ok(wal) = local_wal(broker, &r) else {
                continue;
            };
            let Some(v) = wal.log.vchannel_state(VChannelId(r.vchannel)) else {
                continue;
            };
            let labels = [name.as_str(), &index.to_string()];
            m.log_end_offset
                .with_label_values(&labels)
                .set(v.log_end_offset);
            m.log_start_offset
                .with_label_values(&labels)
                .set(v.log_start_offset);
            m.partition_bytes
                .with_label_values(&labels)
                .set(v.payload_bytes as i64);
        }
    }
}
