//! Producer ids for idempotent producers: handed out from blocks that the metadata Raft group
//! allocates (KIP-730), so no id is ever given twice, across restarts and brokers.

use parking_lot::Mutex;
use sluice_raft::command::{Command, CommandResult};

use crate::cluster::Cluster;

/// Ids fetched from the metadata store at a time.
pub const BLOCK_SIZE: u32 = 1000;

/// The ids of the current block not yet handed out.
#[derive(Default)]
pub struct ProducerIds {
    block: Mutex<std::ops::Range<i64>>,
}

impl ProducerIds {
    /// The next unused producer id, allocating a new block through Raft when this one is spent.
    pub async fn next(&self, cluster: &Cluster) -> Result<i64, sluice_raft::Error> {
        loop {
            if let Some(id) = self.block.lock().next() {
                return Ok(id);
            }
            let command = Command::AllocateProducerIds {
                broker_id: cluster.node_id(),
                block_size: BLOCK_SIZE,
            };
            match cluster.propose(command).await? {
                CommandResult::ProducerIds {
                    first_producer_id,
                    size,
                } => {
                    let mut block = self.block.lock();
                    // Another request may have refilled the block meanwhile; the newer block
                    // wins and the rest of the older one is simply never used.
                    *block = first_producer_id..first_producer_id + i64::from(size);
                }
                other => {
                    return Err(sluice_raft::Error::Codec(format!(
                        "unexpected answer to AllocateProducerIds: {other:?}"
                    )));
                }
            }
        }
    }
}
