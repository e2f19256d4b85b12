//! Damaged Raft files: a torn tail from kill -9 is cut, anything else is a clear error naming
//! the file, never a silent reset.

mod common;

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use common::Sim;
use sluice_raft::Error;
use sluice_raft::command::Command;
use sluice_raft::peer::{Peer, PeerConfig};
use uuid::Uuid;

/// A single-node group with 30 topics, stopped; returns the sim (holding the temp dir).
fn populated() -> Sim {
    let mut sim = Sim::new(1, 1, |c| c.snapshot_interval = 1_000_000);
    assert!(sim.run_until(200, |s| s.leader().is_some()));
    for i in 0..30u128 {
        let cmd = Command::CreateTopic {
            name: format!("t{i}"),
            topic_id: Uuid::from_u128(i + 1),
            partitions: 1,
            configs: BTreeMap::new(),
        };
        sim.peer(1).propose(&cmd).unwrap();
        sim.round();
    }
    assert!(
        sim.run_until(200, |s| s.peers[0].as_ref().unwrap().state().topics.len()
            == 30)
    );
    sim.crash(1);
    sim
}

fn reopen(sim: &Sim) -> Result<Peer, Error> {
    Peer::open(sim.cfgs[0].clone(), &common::logger())
}

fn segment(dir: &Path) -> PathBuf {
    let mut segs: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    segs.sort();
    segs.pop().unwrap()
}

fn corrupt_path(r: Result<Peer, Error>) -> (PathBuf, String) {
    match r {
        Err(Error::Corrupt { path, reason }) => (path, reason),
        Err(e) => panic!("expected a corruption error, got {e}"),
        Ok(_) => panic!("expected a corruption error, the peer opened"),
    }
}

fn dir(sim: &Sim) -> PathBuf {
    sim.cfgs[0].data_dir.clone()
}

#[test]
fn clean_restart_restores_everything() {
    let mut sim = populated();
    sim.restart(1);
    assert!(
        sim.run_until(200, |s| s.peers[0].as_ref().unwrap().state().topics.len()
            == 30)
    );
}

#[test]
fn torn_tail_is_cut_and_the_rest_survives() {
    let mut sim = populated();
    let seg = segment(&dir(&sim));
    let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
    // Half a record header, as a kill -9 during a write leaves it.
    f.write_all(&[0x20, 0x00, 0x00]).unwrap();
    drop(f);
    let len = fs::metadata(&seg).unwrap().len();
    sim.restart(1);
    assert_eq!(
        fs::metadata(&seg).unwrap().len(),
        len - 3,
        "torn bytes were cut"
    );
    assert!(
        sim.run_until(200, |s| s.peers[0].as_ref().unwrap().state().topics.len()
            == 30)
    );
}

#[test]
fn flipped_byte_in_the_log_names_the_segment() {
    let sim = populated();
    let seg = segment(&dir(&sim));
    let mut data = fs::read(&seg).unwrap();
    let mid = data.len() / 2;
    data[mid] ^= 0x55;
    fs::write(&seg, data).unwrap();
    let (path, reason) = corrupt_path(reopen(&sim));
    assert_eq!(path, seg);
    assert!(
        reason.contains("CRC") || reason.contains("length"),
        "{reason}"
    );
}

#[test]
fn truncated_log_below_commit_is_an_error() {
    let sim = populated();
    let seg = segment(&dir(&sim));
    let len = fs::metadata(&seg).unwrap().len();
    OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let (path, reason) = corrupt_path(reopen(&sim));
    assert_eq!(path, seg);
    assert!(reason.contains("commit index"), "{reason}");
}

#[test]
fn deleted_log_is_an_error() {
    let sim = populated();
    fs::remove_file(segment(&dir(&sim))).unwrap();
    let (_, reason) = corrupt_path(reopen(&sim));
    assert!(reason.contains("commit index"), "{reason}");
}

#[test]
fn truncated_snapshot_names_the_file() {
    let sim = populated();
    let snap = dir(&sim).join("snapshot");
    let len = fs::metadata(&snap).unwrap().len();
    OpenOptions::new()
        .write(true)
        .open(&snap)
        .unwrap()
        .set_len(len - 1)
        .unwrap();
    let (path, _) = corrupt_path(reopen(&sim));
    assert_eq!(path, snap);
}

#[test]
fn missing_snapshot_is_an_error_not_a_fresh_start() {
    let sim = populated();
    let snap = dir(&sim).join("snapshot");
    fs::remove_file(&snap).unwrap();
    let (path, _) = corrupt_path(reopen(&sim));
    assert_eq!(path, snap);
}

#[test]
fn garbage_hard_state_names_the_file() {
    let sim = populated();
    let hs = dir(&sim).join("hardstate");
    fs::write(&hs, vec![0xAB; 128]).unwrap();
    let (path, reason) = corrupt_path(reopen(&sim));
    assert_eq!(path, hs);
    assert!(reason.contains("no valid"), "{reason}");
    fs::write(&hs, vec![0xAB; 7]).unwrap();
    assert_eq!(corrupt_path(reopen(&sim)).0, hs);
}

#[test]
fn one_torn_hard_state_slot_falls_back_to_the_other() {
    let mut sim = populated();
    let hs = dir(&sim).join("hardstate");
    let mut data = fs::read(&hs).unwrap();
    // Damage whichever slot is newer; the older one is still a valid (earlier) hard state.
    let newer = if data[8..16] > data[72..80] { 0 } else { 64 };
    data[newer + 20] ^= 0xFF;
    fs::write(&hs, data).unwrap();
    sim.restart(1);
    assert!(
        sim.run_until(200, |s| s.peers[0].as_ref().unwrap().state().topics.len()
            == 30)
    );
}

#[test]
fn zero_node_id_is_rejected() {
    let d = tempfile::tempdir().unwrap();
    let r = Peer::open(PeerConfig::new(0, d.path(), vec![]), &common::logger());
    assert!(matches!(r, Err(Error::Config(_))));
}
