//! Property test: random operations on a pchannel and on an in-memory model must agree on
//! every vchannel's offsets, entries and payload bytes, across restarts, retention,
//! DeleteRecords and truncation; and a replay by position (`scan`), from the start or from a
//! snapshot position, must return every live entry exactly once, in append order.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{append_one, full_payload, opts};
use log_store::{PChannel, Position, Retention, ScanEntry, SyncPolicy, VChannelId};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Append {
        v: u64,
        count: i64,
        len: usize,
    },
    Read {
        v: u64,
        at: f64,
        max_bytes: usize,
    },
    DeleteRecords {
        v: u64,
        at: f64,
    },
    Retention {
        v: u64,
        ms: Option<i64>,
        bytes: Option<u64>,
    },
    Enforce {
        advance: i64,
    },
    Truncate {
        back: usize,
    },
    Restart {
        clean: bool,
    },
    /// Remember `end_position()` and each vchannel's log end, as a broker snapshot would.
    Snapshot,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0..6u64, 1..5i64, 16..2500usize).prop_map(|(v, count, len)| Op::Append { v, count, len }),
        3 => (0..6u64, 0.0..1.0f64, 0..8000usize).prop_map(|(v, at, max_bytes)| Op::Read { v, at, max_bytes }),
        1 => (0..6u64, 0.0..1.0f64).prop_map(|(v, at)| Op::DeleteRecords { v, at }),
        1 => (0..6u64, proptest::option::of(0..200i64), proptest::option::of(0..20_000u64))
            .prop_map(|(v, ms, bytes)| Op::Retention { v, ms, bytes }),
        1 => (0..100i64).prop_map(|advance| Op::Enforce { advance }),
        1 => (0..6usize).prop_map(|back| Op::Truncate { back }),
        1 => any::<bool>().prop_map(|clean| Op::Restart { clean }),
        1 => Just(Op::Snapshot),
    ]
}

#[derive(Debug, Clone, Copy)]
struct MEntry {
    first: i64,
    last: i64,
    ts: i64,
    len: usize,
}

#[derive(Debug, Default, Clone)]
struct MVChannel {
    start: i64,
    end: i64,
    entries: Vec<MEntry>,
    retention: Retention,
}

#[derive(Default)]
struct Model {
    vchannels: BTreeMap<u64, MVChannel>,
    /// (position, vchannel, first offset) of entries appended since the last compaction.
    truncatable: Vec<(u64, u64, i64)>,
    now: i64,
    /// (vchannel, first offset) of every entry, in append order.
    order: Vec<(u64, i64)>,
    /// A snapshot: its position and each vchannel's log end offset then.
    snapshot: Option<(Position, BTreeMap<u64, i64>)>,
}

impl MVChannel {
    fn drop_before(&mut self, offset: i64) {
        self.entries.retain(|e| e.last >= offset);
        self.start = self.start.max(offset);
    }
}

/// Every live entry from `from` on, in batches of about `max_bytes`.
fn scan_all(pc: &PChannel, from: Position, max_bytes: usize) -> Vec<ScanEntry> {
    let mut out: Vec<ScanEntry> = Vec::new();
    let mut at = from;
    loop {
        let batch = pc.scan(at, max_bytes).unwrap();
        let bytes: usize = batch.entries.iter().map(|e| e.entry.payload.len()).sum();
        assert!(batch.entries.len() <= 1 || bytes <= max_bytes);
        assert!(batch.at_end || !batch.entries.is_empty());
        assert!(batch.next_position >= at);
        out.extend(batch.entries);
        if batch.at_end {
            return out;
        }
        at = batch.next_position;
    }
}

/// The scan checks: from position 0 every live entry once, non-copies in append order; from
/// the snapshot, exactly the entries appended after it (copies recognised by their offsets).
fn check_scan(pc: &PChannel, m: &Model) {
    let live = |v: u64, first: i64| {
        m.vchannels
            .get(&v)
            .and_then(|mv| mv.entries.iter().find(|e| e.first == first))
            .copied()
    };
    let expected: Vec<(u64, i64)> = m
        .order
        .iter()
        .copied()
        .filter(|&(v, f)| live(v, f).is_some())
        .collect();
    let got = scan_all(pc, Position(0), 4000);
    let mut seen: Vec<(u64, i64)> = Vec::new();
    let mut last_index = None;
    for (i, g) in got.iter().enumerate() {
        let key = (g.vchannel.0, g.entry.first_offset);
        let e = live(key.0, key.1).unwrap_or_else(|| panic!("scan returned a dead entry {key:?}"));
        assert_eq!((g.entry.last_offset, g.entry.max_timestamp), (e.last, e.ts));
        assert_eq!(&g.entry.payload[..], &full_payload(key.0, key.1, e.len)[..]);
        if i > 0 {
            assert!(g.entry.position > got[i - 1].entry.position, "log order");
        }
        if !g.compaction_copy {
            let at = expected.iter().position(|&x| x == key).unwrap();
            assert!(
                last_index < Some(at),
                "appended entries come in append order"
            );
            last_index = Some(at);
        }
        seen.push(key);
    }
    let mut sorted = seen.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), seen.len(), "an entry appeared twice");
    let mut want = expected.clone();
    want.sort_unstable();
    assert_eq!(sorted, want, "every live entry appears");

    if let Some((p, ends)) = &m.snapshot {
        let end_at = |v: u64| ends.get(&v).copied().unwrap_or(0);
        let mut after: Vec<(u64, i64)> = scan_all(pc, *p, usize::MAX)
            .iter()
            .filter(|g| !g.compaction_copy || g.entry.first_offset >= end_at(g.vchannel.0))
            .map(|g| (g.vchannel.0, g.entry.first_offset))
            .collect();
        after.sort_unstable();
        let mut want: Vec<(u64, i64)> = expected
            .into_iter()
            .filter(|&(v, f)| f >= end_at(v))
            .collect();
        want.sort_unstable();
        assert_eq!(after, want, "replay from the snapshot at {p:?}");
    }
}

fn check(pc: &PChannel, m: &Model) {
    check_scan(pc, m);
    for (&v, mv) in &m.vchannels {
        let st = pc.vchannel_state(VChannelId(v)).expect("known vchannel");
        assert_eq!(
            (st.log_start_offset, st.log_end_offset),
            (mv.start, mv.end),
            "vchannel {v}"
        );
        assert_eq!(st.entry_count as usize, mv.entries.len(), "vchannel {v}");
        assert_eq!(
            st.payload_bytes as usize,
            mv.entries.iter().map(|e| e.len).sum::<usize>()
        );
        let got = pc.read(VChannelId(v), mv.start, usize::MAX).unwrap();
        assert_eq!(got.len(), mv.entries.len());
        for (g, e) in got.iter().zip(&mv.entries) {
            assert_eq!(
                (g.first_offset, g.last_offset, g.max_timestamp),
                (e.first, e.last, e.ts)
            );
            assert_eq!(&g.payload[..], &full_payload(v, e.first, e.len)[..]);
        }
    }
}

fn reopen(dir: &Path) -> PChannel {
    let (pc, report) = PChannel::open(dir, opts(24 << 10, SyncPolicy::Never)).unwrap();
    assert!(
        report.cuts.is_empty(),
        "clean or page-cache restart must cut nothing: {report:?}"
    );
    pc
}

fn run(ops: Vec<Op>) {
    let dir = tempfile::tempdir().unwrap();
    let mut pc = reopen(dir.path());
    let mut m = Model::default();
    for op in ops {
        match op {
            Op::Append { v, count, len } => {
                m.now += 1;
                let mv = m.vchannels.entry(v).or_default();
                let first = mv.end;
                let pos = append_one(&pc, v, first, count, len, m.now);
                mv.entries.push(MEntry {
                    first,
                    last: first + count - 1,
                    ts: m.now,
                    len,
                });
                mv.end += count;
                m.truncatable.push((pos, v, first));
                m.order.push((v, first));
            }
            Op::Read { v, at, max_bytes } => {
                let Some(mv) = m.vchannels.get(&v) else {
                    continue;
                };
                let offset = mv.start + ((mv.end - mv.start) as f64 * at) as i64;
                let got = pc.read(VChannelId(v), offset, max_bytes).unwrap();
                let from = mv.entries.iter().position(|e| e.last >= offset);
                let Some(from) = from else {
                    assert!(got.is_empty());
                    continue;
                };
                let mut budget = 0;
                let mut want = 0;
                for e in &mv.entries[from..] {
                    if want > 0 && budget + e.len > max_bytes {
                        break;
                    }
                    budget += e.len;
                    want += 1;
                }
                assert_eq!(got.len(), want);
                for (g, e) in got.iter().zip(&mv.entries[from..]) {
                    assert_eq!(g.first_offset, e.first);
                    assert_eq!(&g.payload[..], &full_payload(v, e.first, e.len)[..]);
                }
            }
            Op::DeleteRecords { v, at } => {
                let Some(mv) = m.vchannels.get_mut(&v) else {
                    continue;
                };
                let offset = mv.start + ((mv.end - mv.start) as f64 * at) as i64;
                assert_eq!(
                    pc.delete_records(VChannelId(v), offset).unwrap(),
                    offset.max(mv.start)
                );
                mv.drop_before(offset);
            }
            Op::Retention { v, ms, bytes } => {
                let Some(mv) = m.vchannels.get_mut(&v) else {
                    continue;
                };
                mv.retention = Retention { ms, bytes };
                pc.set_retention(VChannelId(v), mv.retention).unwrap();
            }
            Op::Enforce { advance } => {
                m.now += advance;
                let report = pc.enforce_retention(m.now).unwrap();
                for mv in m.vchannels.values_mut() {
                    let mut start = mv.start;
                    let mut bytes: usize = mv.entries.iter().map(|e| e.len).sum();
                    for e in &mv.entries {
                        let expired = mv.retention.ms.is_some_and(|ms| e.ts < m.now - ms);
                        let oversize = mv.retention.bytes.is_some_and(|b| bytes as u64 > b);
                        if !expired && !oversize {
                            break;
                        }
                        bytes -= e.len;
                        start = e.last + 1;
                    }
                    mv.drop_before(start);
                }
                if report.bytes_copied > 0 {
                    m.truncatable.clear();
                }
            }
            Op::Truncate { back } => {
                if m.truncatable.len() <= back {
                    continue;
                }
                let keep = m.truncatable.len() - 1 - back;
                let (pos, _, _) = m.truncatable[keep];
                let end = pc.truncate_after(Position(pos)).unwrap();
                if m.snapshot.as_ref().is_some_and(|(p, _)| *p > end) {
                    m.snapshot = None; // positions above the cut will be reused
                }
                for &(_, v, first) in &m.truncatable[keep + 1..] {
                    m.order.retain(|&x| x != (v, first));
                    let mv = m.vchannels.get_mut(&v).unwrap();
                    if first < mv.end {
                        mv.end = first;
                        mv.entries.retain(|e| e.first < first);
                        mv.start = mv.start.min(first);
                    }
                }
                m.truncatable.truncate(keep + 1);
            }
            Op::Snapshot => {
                let ends = m.vchannels.iter().map(|(&v, mv)| (v, mv.end)).collect();
                m.snapshot = Some((pc.end_position(), ends));
            }
            Op::Restart { clean } => {
                if clean {
                    pc.close().unwrap();
                }
                drop(pc);
                pc = reopen(dir.path());
                // Retention settings are persisted lazily; their owner re-applies them.
                for (&v, mv) in &m.vchannels {
                    pc.set_retention(VChannelId(v), mv.retention).unwrap();
                }
            }
        }
        check(&pc, &m);
    }
    drop(pc);
    check(&reopen(dir.path()), &m);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn pchannel_matches_model(ops in proptest::collection::vec(op(), 1..60)) {
        run(ops);
    }
}
