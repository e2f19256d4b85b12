#!/usr/bin/env bash
# Exactly-once costs on one Sluice broker: plain produce with acks=all against idempotent
# produce, and transactional produce committing every TXN_SIZE records (commit latency
# reported). Prints one JSON line per run; rounds alternate so noise hits every mode alike.
#
#   tools/bench/transactions.sh
#
# Environment (defaults in brackets):
#   TEST_SLUICE_BIN    the broker, a release build   [$target/release/sluice]
#   TEST_SLUICE_BENCH  sluice-bench, release build   [$target/release/sluice-bench]
#   RECORDS            records per plain/idempotent run   [500000]
#   TXN_RECORDS        records per transactional run      [100000]
#   TXN_SIZE           records per transaction            [100]
#   PARTITIONS         partitions of each topic           [16]
#   ROUNDS             rounds of the three modes          [2]
#   JAVA_RECORDS       records per Java producer run (0 skips the Java runs)   [500000]
#   JAVA_PROPS         extra Java producer settings, KEY=VALUE words    []
#   TEST_SLUICE_JARS   the Java client jars           [$HOME/.cache/sluice/jars]
#
# The Java producer runs plain and idempotent with the client's defaults, where both allow 5
# requests in flight per connection; librdkafka allows a plain producer 1,000,000 and an
# idempotent one 5, which is why its plain-at-5-in-flight run is there.
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
target=${CARGO_TARGET_DIR:-$repo/target}
SLUICE_BIN=${TEST_SLUICE_BIN:-$target/release/sluice}
BENCH_BIN=${TEST_SLUICE_BENCH:-$target/release/sluice-bench}
RECORDS=${RECORDS:-500000}
TXN_RECORDS=${TXN_RECORDS:-100000}
TXN_SIZE=${TXN_SIZE:-100}
PARTITIONS=${PARTITIONS:-16}
ROUNDS=${ROUNDS:-2}
JAVA_RECORDS=${JAVA_RECORDS:-500000}
JARS=${TEST_SLUICE_JARS:-$HOME/.cache/sluice/jars}
export RUST_LIB_BACKTRACE=0

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
data=$(mktemp -d)
"$SLUICE_BIN" --data-dir "$data" --listen "127.0.0.1:$port" --advertise "127.0.0.1:$port" \
    --metrics-listen "" --raft-listen 127.0.0.1:0 -o log.segment.bytes=268435456 \
    >"$data.log" 2>&1 &
broker=$!
trap 'kill $broker 2>/dev/null; wait $broker 2>/dev/null; rm -rf "$data" "$data.log"' EXIT
for _ in $(seq 100); do
    grep -q "kafka listener accepting" "$data.log" && break
    sleep 0.1
done

bench() {
    "$BENCH_BIN" produce -b "127.0.0.1:$port" -p "$PARTITIONS" -s 1024 --no-progress --json "$@"
}
echo "# $(date -u +%FT%TZ), load average $(cut -d' ' -f1-3 /proc/loadavg)"
for round in $(seq "$ROUNDS"); do
    # Each run starts with no dirty pages left by the one before.
    sync
    bench -t "plain-$round" -n "$RECORDS" --acks all \
        | jq -c '{mode: "plain, acks=all", records_per_sec, mib_per_sec, latency_p99_ms: .latency_ms.p99}'
    # librdkafka caps idempotent producers at 5 requests in flight per connection: plain
    # produce under the same cap separates that limit from the broker's idempotence work.
    sync
    bench -t "plain5-$round" -n "$RECORDS" --acks all -X max.in.flight.requests.per.connection=5 \
        | jq -c '{mode: "plain, acks=all, 5 in flight", records_per_sec, mib_per_sec, latency_p99_ms: .latency_ms.p99}'
    sync
    bench -t "idempotent-$round" -n "$RECORDS" --idempotence \
        | jq -c '{mode: "idempotent", records_per_sec, mib_per_sec, latency_p99_ms: .latency_ms.p99}'
    sync
    bench -t "txn-$round" -n "$TXN_RECORDS" --transaction-size "$TXN_SIZE" \
        | jq -c --arg size "$TXN_SIZE" '{mode: ("transactional, " + $size + " records per commit"), records_per_sec, mib_per_sec, commit_ms: .commit_latency_ms}'
    if [ "$JAVA_RECORDS" -gt 0 ]; then
        classpath=$(find "$JARS" -name '*.jar' | sort | paste -sd:)
        for idempotence in false true; do
            sync
            # shellcheck disable=SC2086 # JAVA_PROPS is a word list on purpose
            java -cp "$classpath" "$repo/tools/bench/java/ProduceBench.java" "127.0.0.1:$port" \
                "java-$idempotence-$round" "$PARTITIONS" "$JAVA_RECORDS" 1024 \
                enable.idempotence=$idempotence ${JAVA_PROPS:-} 2>/dev/null \
                | jq -c '{mode: ("java, idempotence=" + .idempotence), records_per_sec, mib_per_sec, latency_p99_ms: .latency_ms.p99}'
        done
    fi
done
