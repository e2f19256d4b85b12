//! A simulated network of in-process peers: messages are dropped, delayed, reordered and
//! partitioned; peers crash (dropped without warning) and restart from their directories.

#![allow(dead_code)]

pub mod cluster;

use std::collections::{BTreeMap, BTreeSet};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sluice_raft::command::{Command, CommandError, CommandResult};
use sluice_raft::peer::{Peer, PeerConfig};
use sluice_raft::{MessageType, MetadataState, RaftMessage};
use tempfile::TempDir;

/// Discards logs unless `SLUICE_TEST_LOG` is set.
pub fn logger() -> slog::Logger {
    if std::env::var_os("SLUICE_TEST_LOG").is_some() {
        use slog::Drain;
        let decorator = slog_term::TermDecorator::new().build();
        let drain = slog_term::FullFormat::new(decorator).build().fuse();
        let drain = slog_async::Async::new(drain).build().fuse();
        slog::Logger::root(drain, slog::o!())
    } else {
        slog::Logger::root(slog::Discard, slog::o!())
    }
}

type Outcome = Result<CommandResult, CommandError>;

/// Faults of the simulated network.
#[derive(Clone, Copy, Debug)]
pub struct Faults {
    /// Probability a message is dropped.
    pub drop: f64,
    /// Largest delay in rounds (delays are uniform in `0..=max_delay`, so messages reorder).
    pub max_delay: u64,
    /// Probability that a peer crashes right after persisting a Ready, before its messages
    /// leave and before its callers hear about applied entries.
    pub crash_after_persist: f64,
}

/// A simulated cluster.
pub struct Sim {
    pub rng: StdRng,
    pub dir: TempDir,
    pub cfgs: Vec<PeerConfig>,
    pub peers: Vec<Option<Peer>>,
    pub now: u64,
    queue: Vec<(u64, RaftMessage)>,
    pub faults: Faults,
    /// Peers in the same group can talk; empty means no partition.
    pub groups: Vec<BTreeSet<u64>>,
    /// Every applied entry seen on any peer: index → (command, outcome).
    pub global: BTreeMap<u64, (Option<Command>, Outcome)>,
    /// Outcomes of acknowledged proposals: (peer, proposal id) → outcome.
    pub acked: BTreeMap<(u64, u64), (u64, Outcome)>,
    /// Entries a peer originated through another leader: (peer, request id) → outcome.
    pub originated: BTreeMap<(u64, u64), (u64, Outcome)>,
    log: slog::Logger,
}

impl Sim {
    pub fn new(n: u64, seed: u64, tweak: impl Fn(&mut PeerConfig)) -> Sim {
        let dir = tempfile::tempdir().unwrap();
        let voters: Vec<u64> = (1..=n).collect();
        let log = logger();
        let cfgs: Vec<PeerConfig> = voters
            .iter()
            .map(|&id| {
                let mut c = PeerConfig::new(id, dir.path().join(format!("n{id}")), voters.clone());
                c.pchannels = 8;
                // Crashes here drop the process, never the page cache.
                c.sync_writes = false;
                tweak(&mut c);
                c
            })
            .collect();
        let peers = cfgs
            .iter()
            .map(|c| Some(Peer::open(c.clone(), &log).unwrap()))
            .collect();
        Sim {
            rng: StdRng::seed_from_u64(seed),
            dir,
            cfgs,
            peers,
            now: 0,
            queue: Vec::new(),
            faults: Faults {
                drop: 0.0,
                max_delay: 0,
                crash_after_persist: 0.0,
            },
            groups: Vec::new(),
            global: BTreeMap::new(),
            acked: BTreeMap::new(),
            originated: BTreeMap::new(),
            log,
        }
    }

    fn connected(&self, a: u64, b: u64) -> bool {
        self.groups.is_empty() || self.groups.iter().any(|g| g.contains(&a) && g.contains(&b))
    }

    /// One round: deliver due messages, tick everyone, handle every Ready.
    pub fn round(&mut self) {
        self.now += 1;
        let now = self.now;
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.queue)
            .into_iter()
            .partition(|(t, _)| *t <= now);
        self.queue = later;
        for (_, m) in due {
            if !self.connected(m.from, m.to) {
                continue;
            }
            if let Some(Some(p)) = self.peers.get_mut(m.to as usize - 1) {
                p.step(m);
            }
        }
        for i in 0..self.peers.len() {
            if let Some(p) = self.peers[i].as_mut() {
                p.tick();
            }
            self.ready(i);
        }
    }

    /// Handles the Ready of peer `i` and routes its output.
    pub fn ready(&mut self, i: usize) {
        let Some(p) = self.peers[i].as_mut() else {
            return;
        };
        let id = p.id();
        let out = p.handle_ready().expect("storage works");
        if self.faults.crash_after_persist > 0.0
            && self.rng.random_bool(self.faults.crash_after_persist)
        {
            // Everything was persisted; nothing was sent or acknowledged. The applied entries
            // are checked all the same: a restart must apply the same ones.
            for (index, cmd, outcome) in out.log {
                if let Some(prev) = self.global.get(&index) {
                    assert_eq!(prev, &(cmd, outcome), "peer {id} diverged at {index}");
                }
            }
            self.peers[i] = None;
            return;
        }
        for (index, cmd, outcome) in out.log {
            match self.global.get(&index) {
                Some(prev) => assert_eq!(
                    prev,
                    &(cmd, outcome),
                    "peer {id} applied a different entry at index {index}"
                ),
                None => {
                    self.global.insert(index, (cmd, outcome));
                }
            }
        }
        for a in out.applied {
            self.acked.insert((id, a.proposal), (a.index, a.outcome));
        }
        for a in out.originated {
            self.originated
                .insert((id, a.proposal), (a.index, a.outcome));
        }
        for m in out.messages {
            let snapshot = m.get_msg_type() == MessageType::MsgSnapshot;
            if self.rng.random_bool(self.faults.drop) || !self.connected(m.from, m.to) {
                if snapshot {
                    self.peers[i].as_mut().unwrap().report_snapshot(m.to, false);
                }
                continue;
            }
            if snapshot {
                self.peers[i].as_mut().unwrap().report_snapshot(m.to, true);
            }
            let delay = self.rng.random_range(0..=self.faults.max_delay);
            self.queue.push((self.now + delay, m));
        }
    }

    pub fn leader(&self) -> Option<u64> {
        let leaders: Vec<u64> = self
            .peers
            .iter()
            .flatten()
            .filter(|p| p.is_leader())
            .map(|p| p.id())
            .collect();
        // Stale leaders may linger in a minority partition: prefer the highest term.
        leaders
            .into_iter()
            .max_by_key(|&id| self.peers[id as usize - 1].as_ref().unwrap().term())
    }

    pub fn peer(&mut self, id: u64) -> &mut Peer {
        self.peers[id as usize - 1].as_mut().expect("peer is up")
    }

    /// Runs rounds until `f` holds, at most `max` rounds.
    pub fn run_until(&mut self, max: u64, mut f: impl FnMut(&Sim) -> bool) -> bool {
        for _ in 0..max {
            if f(self) {
                return true;
            }
            self.round();
        }
        f(self)
    }

    pub fn crash(&mut self, id: u64) {
        self.peers[id as usize - 1] = None;
    }

    pub fn restart(&mut self, id: u64) {
        let cfg = self.cfgs[id as usize - 1].clone();
        self.peers[id as usize - 1] = Some(Peer::open(cfg, &self.log).unwrap());
    }

    /// Adds a peer that starts with no voters and waits to be added by the group.
    pub fn add_joiner(&mut self) -> u64 {
        let id = self.peers.len() as u64 + 1;
        let mut cfg = self.cfgs[0].clone();
        cfg.id = id;
        cfg.data_dir = self.dir.path().join(format!("n{id}"));
        cfg.initial_voters = Vec::new();
        self.cfgs.push(cfg.clone());
        self.peers.push(Some(Peer::open(cfg, &self.log).unwrap()));
        id
    }

    pub fn up(&self) -> Vec<u64> {
        self.peers.iter().flatten().map(|p| p.id()).collect()
    }

    /// Highest applied version among live peers.
    pub fn max_version(&self) -> u64 {
        self.peers
            .iter()
            .flatten()
            .map(|p| p.state().version)
            .max()
            .unwrap_or(0)
    }

    /// Whether all live peers have the same applied state at `version` or beyond.
    pub fn converged(&self, version: u64) -> bool {
        let states: Vec<&MetadataState> =
            self.peers.iter().flatten().map(|p| &**p.state()).collect();
        states
            .iter()
            .all(|s| s.version >= version && **s == *states[0])
    }
}
