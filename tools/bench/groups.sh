#!/usr/bin/env bash
# Consumer groups on one Sluice broker: how long a join into a 10-member group over 100
# partitions takes to settle (Java client, eager / cooperative-sticky / KIP-848 consumer
# protocol, client defaults), and offset commits per second (sluice-bench commit). Builds
# nothing; prints one JSON line per run, then one summary line per measurement.
#
#   tools/bench/groups.sh
#
# Environment (defaults in brackets):
#   TEST_SLUICE_BIN    the broker, a release build   [$target/release/sluice]
#   TEST_SLUICE_BENCH  sluice-bench, release build   [$target/release/sluice-bench]
#   TEST_SLUICE_JARS   Kafka Java client jars        [$HOME/.cache/sluice/jars]
#   RUNS               rebalance runs per protocol                 [5]
#   PROTOCOLS          which rebalances to measure (empty: none)   [eager cooperative consumer]
#   CONSUMER_PROPS     Java consumer settings over the defaults, KEY=VALUE separated by spaces
#   COMMIT_SECONDS     length of each commit run                   [10]
#   COMMIT_CASES       commit runs, "name:sluice-bench flags" separated by ";"
#                      [one consumer, one group; 8 consumers sharing a group; 8 groups]
#   ROUNDS             rounds of the commit cases (0: none)        [3]
#   BROKER_ARGS        extra broker flags (e.g. "-o group.consumer.heartbeat.interval.ms=1000")
# $target is $CARGO_TARGET_DIR, else ./target. Build first:
#   cargo build --release --bin sluice --bin sluice-bench
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
target=${CARGO_TARGET_DIR:-$repo/target}
SLUICE_BIN=${TEST_SLUICE_BIN:-$target/release/sluice}
BENCH_BIN=${TEST_SLUICE_BENCH:-$target/release/sluice-bench}
JARS=${TEST_SLUICE_JARS:-$HOME/.cache/sluice/jars}
RUNS=${RUNS:-5}
PROTOCOLS=${PROTOCOLS-eager cooperative consumer}
COMMIT_SECONDS=${COMMIT_SECONDS:-10}
COMMIT_CASES=${COMMIT_CASES:-"1 consumer, 1 group:--consumers 1;8 consumers, 1 shared group:--consumers 8 --shared-group;8 consumers, 8 groups:--consumers 8"}
ROUNDS=${ROUNDS:-3}
export RUST_LIB_BACKTRACE=0

for bin in "$SLUICE_BIN" "$BENCH_BIN"; do
    [ -x "$bin" ] || { echo "missing executable: $bin" >&2; exit 2; }
done
classpath=$(find "$JARS" -name '*.jar' | sort | paste -sd:)
[ -n "$classpath" ] || { echo "no jars in $JARS" >&2; exit 2; }

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
data=$(mktemp -d)
# 16 MiB segments: the default preallocates 1 GiB for each of the 16 pchannels.
# shellcheck disable=SC2086 # BROKER_ARGS is a word list on purpose
"$SLUICE_BIN" --data-dir "$data/d" --listen "127.0.0.1:$port" --advertise "127.0.0.1:$port" \
    --metrics-listen "" --raft-listen 127.0.0.1:0 -o log.segment.bytes=16777216 ${BROKER_ARGS:-} \
    >"$data/broker.log" 2>&1 &
broker=$!
trap 'kill $broker 2>/dev/null; wait $broker 2>/dev/null; rm -rf "$data"' EXIT
for _ in $(seq 100); do
    grep -q "kafka listener accepting" "$data/broker.log" && break
    kill -0 $broker 2>/dev/null || { cat "$data/broker.log" >&2; exit 2; }
    sleep 0.1
done

load() { cut -d' ' -f1-3 /proc/loadavg; }
echo "# $(date -u +%FT%TZ) $("$SLUICE_BIN" --version), load average $(load)"

# Rebalance: one JVM per protocol; RebalanceBench prints a line per run and a summary.
for protocol in $PROTOCOLS; do
    # shellcheck disable=SC2086 # CONSUMER_PROPS is a word list on purpose
    java -cp "$classpath" "$repo/tools/bench/java/RebalanceBench.java" \
        "127.0.0.1:$port" rebalance-100 "$protocol" "$RUNS" 100 10 ${CONSUMER_PROPS:-} 2>"$data/java.err" \
        || { grep -v SLF4J "$data/java.err" | tail -20 >&2; exit 1; }
    echo "# load average $(load)"
done

# Offset commits: the cases alternate within each round so noise hits them alike.
IFS=';' read -ra cases <<<"$COMMIT_CASES"
for round in $(seq "$ROUNDS"); do
    for case in "${cases[@]}"; do
        name=${case%%:*}
        # shellcheck disable=SC2086 # the flags are a word list on purpose
        "$BENCH_BIN" commit -b "127.0.0.1:$port" -t commits -p 16 -n 1000000000 \
            --duration "$COMMIT_SECONDS" --no-progress --json ${case#*:} \
            | jq -c --arg name "$name" --argjson round "$round" --arg load "$(load)" \
                '{commit: $name, round: $round, commits_per_sec: (.records_per_sec | round),
                  failed: .records_failed, in_flight, latency_ms: (.latency_ms | {p50, p99, p999, max}),
                  load_at_start: $load}' | tee -a "$data/commits.jsonl"
    done
done
[ -s "$data/commits.jsonl" ] && jq -s -c 'group_by(.commit)[] | (map(.commits_per_sec) | sort) as $r
    | {commit: .[0].commit, summary: true, rounds: length, median_commits_per_sec: $r[length / 2 | floor],
       min_commits_per_sec: $r[0], max_commits_per_sec: $r[-1],
       median_p99_ms: (map(.latency_ms.p99) | sort | .[length / 2 | floor])}' "$data/commits.jsonl"
echo "# load average $(load)"
