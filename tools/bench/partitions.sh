#!/usr/bin/env bash
# Produce throughput at many partitions against 16, in alternating pairs on one Sluice broker,
# so that both sides of each ratio see the same moment of a shared, noisy machine. Every
# many-partition run writes a topic of its own, which is then read back in full: the run
# fails unless the consumer received exactly what the producer had acknowledged.
#
#   tools/bench/partitions.sh
#
# Environment (defaults in brackets):
#   TEST_SLUICE_BIN    the broker, a release build   [$target/release/sluice]
#   TEST_SLUICE_BENCH  sluice-bench, release build   [$target/release/sluice-bench]
#   PAIRS        alternating pairs                   [5]
#   RECORDS      1 KiB records per produce run       [1000000]
#   MANY         partitions of the many-partition runs   [1000]
# Prints one markdown table row per run and a summary line: the median of the pairs' ratios and
# the ratio of the summed throughputs.
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
target=${CARGO_TARGET_DIR:-$repo/target}
SLUICE_BIN=${TEST_SLUICE_BIN:-$target/release/sluice}
BENCH_BIN=${TEST_SLUICE_BENCH:-$target/release/sluice-bench}
PAIRS=${PAIRS:-5}
RECORDS=${RECORDS:-1000000}
MANY=${MANY:-1000}
for bin in "$SLUICE_BIN" "$BENCH_BIN"; do
    [ -x "$bin" ] || { echo "missing executable: $bin" >&2; exit 2; }
done

work=$(mktemp -d)
broker=
cleanup() {
    [ -n "$broker" ] && kill "$broker" 2>/dev/null && wait "$broker" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

# 64 MiB segments, as in compare.sh (the default preallocates 1 GiB per pchannel).
"$SLUICE_BIN" --data-dir "$work/data" --listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 \
    --raft-listen 127.0.0.1:0 --log-format json -o log.segment.bytes=67108864 \
    2>"$work/sluice.log" >/dev/null &
broker=$!
for _ in $(seq 1 300); do
    grep -q '"msg":"kafka listener accepting"' "$work/sluice.log" 2>/dev/null && break
    kill -0 "$broker" 2>/dev/null || { cat "$work/sluice.log" >&2; exit 2; }
    sleep 0.1
done
addr=$(grep '"msg":"kafka listener accepting"' "$work/sluice.log" | head -1 | jq -r .addr)
bench() { "$BENCH_BIN" -b "$addr" --json --no-progress "$@"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$broker/stat"; }
hz=$(getconf CLK_TCK)

echo "# $(date -u +%FT%TZ) load $(cut -d' ' -f1-3 /proc/loadavg), $PAIRS pairs of $RECORDS x 1 KiB, acks=1"
echo "| pair | partitions | MiB/s | p50 ms | p99 ms | broker CPU (cores) | load | records back |"
echo "|---|---:|---:|---:|---:|---:|---|---|"
ratios=()
sum16=0
summany=0
for pair in $(seq 1 "$PAIRS"); do
    mib=()
    for p in 16 "$MANY"; do
        topic="p$p-$pair"
        # The topic exists before the clock starts (sluice-bench creates it), and no run
        # pays for writing back the one before.
        bench produce -t "$topic" -p "$p" -n 1 -s 1024 --acks 1 >/dev/null
        sync
        t0=$(cpu_ticks)
        bench produce -t "$topic" -p "$p" -n "$RECORDS" -s 1024 --acks 1 >"$work/run.json"
        ticks=$(( $(cpu_ticks) - t0 ))
        rate=$(jq .mib_per_sec "$work/run.json")
        elapsed=$(jq .elapsed_s "$work/run.json")
        back="-"
        if [ "$p" = "$MANY" ]; then
            # The one record of the creating run is on the topic too.
            acked=$(( $(jq .records_acked "$work/run.json") + 1 ))
            if [ "$(jq .records_failed "$work/run.json")" != 0 ]; then
                echo "failed sends in $topic" >&2
                exit 1
            fi
            got=$(bench consume -t "$topic" -n "$acked" --idle-timeout-ms 5000 | jq .records_consumed)
            if [ "$got" != "$acked" ]; then
                echo "lost records: $topic acknowledged $acked, read back $got" >&2
                exit 1
            fi
            back="$got of $acked"
        fi
        echo "| $pair | $p | $rate | $(jq .latency_ms.p50 "$work/run.json") | $(jq .latency_ms.p99 "$work/run.json") | $(echo "scale=2; $ticks / $hz / $elapsed" | bc) | $(cut -d' ' -f1 /proc/loadavg) | $back |"
        mib+=("$rate")
    done
    ratios+=("$(echo "scale=3; ${mib[1]} / ${mib[0]}" | bc)")
    sum16=$(echo "$sum16 + ${mib[0]}" | bc)
    summany=$(echo "$summany + ${mib[1]}" | bc)
done
median=$(printf '%s\n' "${ratios[@]}" | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}')
echo
echo "$MANY / 16 partitions: median of pair ratios $median (pairs: ${ratios[*]}); ratio of sums $(echo "scale=3; $summany / $sum16" | bc)"
