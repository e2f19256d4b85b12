//! End-to-end figures of the metadata store on this machine: proposals per second (many in
//! flight, so the driver batches them into one fsync), propose-to-apply latency on the leader
//! and forwarded from a follower, and leader failover time. Run with
//! `cargo bench -p sluice-raft --bench metadata`; set `SLUICE_BENCH_PROPOSALS` to change the
//! number of proposals per run.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use sluice_raft::{Command, MetadataStore, NodeConfig};
use tokio::net::TcpListener;
use uuid::Uuid;

fn logger() -> slog::Logger {
    slog::Logger::root(slog::Discard, slog::o!())
}

fn topic(i: usize) -> Command {
    Command::CreateTopic {
        name: format!("bench-{i}-{}", Uuid::new_v4().simple()),
        topic_id: Uuid::new_v4(),
        partitions: 1,
        configs: BTreeMap::new(),
    }
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

/// The commands a run proposes.
#[derive(Clone, Copy)]
enum Workload {
    /// `BrokerHeartbeat`: the most frequent metadata write of a running cluster.
    Heartbeat,
    /// `CreateTopic` with one partition: each one grows the state.
    CreateTopic,
}

fn command(w: Workload, i: usize) -> Command {
    match w {
        Workload::Heartbeat => Command::BrokerHeartbeat {
            broker_id: 1,
            incarnation_id: Uuid::from_u128(1),
            now_ms: i as i64,
        },
        Workload::CreateTopic => topic(i),
    }
}

/// Raw `fdatasync` latency of a small append in `dir`: the floor under every figure.
fn fsync_probe(dir: &std::path::Path) -> f64 {
    use std::io::Write;
    let mut f = std::fs::File::create(dir.join("probe")).unwrap();
    let start = Instant::now();
    for _ in 0..200 {
        f.write_all(&[7u8; 200]).unwrap();
        f.sync_data().unwrap();
    }
    start.elapsed().as_secs_f64() * 1e3 / 200.0
}

async fn register(s: &MetadataStore) {
    s.propose(Command::RegisterBroker {
        broker_id: 1,
        incarnation_id: Uuid::from_u128(1),
        listeners: Vec::new(),
        rack: None,
        now_ms: 0,
        lease_ms: 10_000,
    })
    .await
    .unwrap();
}

/// `total` proposals from `in_flight` concurrent callers on `leader`.
async fn load(
    leader: &MetadataStore,
    w: Workload,
    total: usize,
    in_flight: usize,
) -> (f64, Vec<Duration>) {
    let start = Instant::now();
    let per = total / in_flight;
    let mut tasks = Vec::new();
    for n in 0..in_flight {
        let (s, workload) = (leader.clone(), w);
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(per);
            for i in 0..per {
                let t = Instant::now();
                s.propose(command(workload, n * per + i))
                    .await
                    .expect("proposal applied");
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap());
    }
    let secs = start.elapsed().as_secs_f64();
    lat.sort();
    (lat.len() as f64 / secs, lat)
}

fn report(name: &str, in_flight: usize, rate: f64, lat: &[Duration]) {
    println!(
        "{name:<36} in_flight={in_flight:<4} proposals/s={rate:>9.0}  p50={:>7.2} ms  p99={:>7.2} ms  max={:>7.2} ms",
        pct(lat, 0.5),
        pct(lat, 0.99),
        pct(lat, 1.0)
    );
}

async fn three_nodes(dir: &std::path::Path) -> Vec<MetadataStore> {
    let mut listeners = Vec::new();
    let mut addrs = BTreeMap::new();
    for id in 1..=3u64 {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        addrs.insert(id, l.local_addr().unwrap().to_string());
        listeners.push(l);
    }
    let mut stores = Vec::new();
    for (i, l) in listeners.into_iter().enumerate() {
        let id = i as u64 + 1;
        let cfg = NodeConfig::cluster(
            id,
            dir.join(format!("n{id}")),
            addrs[&id].clone(),
            addrs.clone(),
        );
        stores.push(
            MetadataStore::start_with_listener(cfg, Some(l), logger())
                .await
                .unwrap(),
        );
    }
    stores
}

async fn leader(stores: &[MetadataStore]) -> MetadataStore {
    loop {
        if let Some(s) = stores
            .iter()
            .find(|s| s.status().is_leader && s.state().cluster.is_some())
        {
            return s.clone();
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let total: usize = std::env::var("SLUICE_BENCH_PROPOSALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        println!(
            "fdatasync of a 200-byte append: {:.2} ms",
            fsync_probe(dir.path())
        );
        let runs = [
            ("heartbeat, sequential", Workload::Heartbeat, total / 10, 1),
            ("heartbeat, batched", Workload::Heartbeat, total / 4, 16),
            ("heartbeat, batched", Workload::Heartbeat, total, 256),
            ("create topic, batched", Workload::CreateTopic, total, 256),
        ];
        // One node.
        let s = MetadataStore::start(NodeConfig::single(1, dir.path().join("single")), logger())
            .await
            .unwrap();
        s.wait_initialized().await.unwrap();
        register(&s).await;
        for (name, w, n, in_flight) in runs {
            let (rate, lat) = load(&s, w, n, in_flight).await;
            report(&format!("1 node, {name}"), in_flight, rate, &lat);
        }
        s.shutdown().await;

        // Three nodes over loopback.
        let dir = tempfile::tempdir().unwrap();
        let stores = three_nodes(dir.path()).await;
        let l = leader(&stores).await;
        register(&l).await;
        // Forwarded from a follower (answered once applied on the follower itself), next to
        // the same runs on the leader; before the topic-creation run, so both see the same
        // state size.
        let follower = stores
            .iter()
            .find(|s| !s.status().is_leader)
            .expect("a follower")
            .clone();
        for (name, w, n, in_flight) in runs {
            let (rate, lat) = load(&l, w, n, in_flight).await;
            report(&format!("3 nodes, {name}"), in_flight, rate, &lat);
            if in_flight <= 16 {
                let (rate, lat) = load(&follower, w, n, in_flight).await;
                report(
                    &format!("3 nodes, forwarded, {name}"),
                    in_flight,
                    rate,
                    &lat,
                );
            }
        }
        for s in &stores {
            s.shutdown().await;
        }

        // Failover with default timeouts: stop the leader, time until a write commits again.
        let mut times = Vec::new();
        for _ in 0..3 {
            let dir = tempfile::tempdir().unwrap();
            let stores = three_nodes(dir.path()).await;
            let l = leader(&stores).await;
            l.propose(topic(0)).await.unwrap();
            let old = l.status().node_id;
            let start = Instant::now();
            l.shutdown().await;
            let rest: Vec<MetadataStore> = stores
                .iter()
                .filter(|s| s.status().node_id != old)
                .cloned()
                .collect();
            loop {
                let Some(n) = rest.iter().find(|s| s.status().is_leader) else {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                };
                if n.propose(Command::Noop).await.is_ok() {
                    break;
                }
            }
            times.push(start.elapsed());
            for s in &rest {
                s.shutdown().await;
            }
        }
        let ms: Vec<String> = times
            .iter()
            .map(|t| format!("{:.0} ms", t.as_secs_f64() * 1e3))
            .collect();
        println!(
            "failover (stop leader → next write applied), 3 nodes, default timeouts: {}",
            ms.join(", ")
        );
    });
}
