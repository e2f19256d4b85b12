//! State-machine snapshots: the [`MetadataState`] serialized with a format version, carried in
//! raft-rs `Snapshot.data`.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::state::MetadataState;

/// Format version of snapshot data.
pub const SNAPSHOT_FORMAT_VERSION: u32 = 1;

#[derive(Serialize)]
struct SnapshotRef<'a> {
    format_version: u32,
    state: &'a MetadataState,
}

#[derive(Deserialize)]
struct SnapshotOwned {
    format_version: u32,
    state: MetadataState,
}

/// Encodes the state for a snapshot.
pub fn encode(state: &MetadataState) -> Vec<u8> {
    serde_json::to_vec(&SnapshotRef {
        format_version: SNAPSHOT_FORMAT_VERSION,
        state,
    })
    .expect("metadata state always serializes")
}

/// Decodes snapshot data; an empty buffer is the empty state (a snapshot at index 0).
pub fn decode(data: &[u8]) -> Result<MetadataState> {
    if data.is_empty() {
        return Ok(MetadataState::default());
    }
    let s: SnapshotOwned =
        serde_json::from_slice(data).map_err(|e| Error::Codec(format!("snapshot data: {e}")))?;
    if s.format_version != SNAPSHOT_FORMAT_VERSION {
        return Err(Error::Codec(format!(
            "snapshot format version {} (this build reads {})",
            s.format_version, SNAPSHOT_FORMAT_VERSION
        )));
    }
    Ok(s.state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let state = MetadataState {
            version: 42,
            next_producer_id: 7,
            ..Default::default()
        };
        assert_eq!(decode(&encode(&state)).unwrap(), state);
        assert!(decode(b"{\"format_version\":9,\"state\":{}}").is_err());
        assert_eq!(decode(&[]).unwrap(), MetadataState::default());
    }
}
