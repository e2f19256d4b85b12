#!/bin/sh
# Re-captures the golden frames: starts capture_frames, drives real clients at it.
# Needs: the venv with confluent-kafka + kafka-python, Java and kafka-clients jars.
# WHAT=producers|consumers|all (default all) selects which clients run.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${OUT:-$HERE/..}
VENV=${VENV:-/root/.cache/sluice/venv}
JARS=${JARS:-/root/.cache/sluice/jars}
PORT=${PORT:-19092}
WHAT=${WHAT:-all}
cd "$HERE/../../../.."
CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/root/.cache/sluice/target-protocol} \
    cargo build -q -p sluice-protocol --example capture_frames
BIN=${CARGO_TARGET_DIR:-/root/.cache/sluice/target-protocol}/debug/examples/capture_frames
TMP=$(mktemp -d)
"$BIN" "$TMP" "$PORT" & PID=$!
trap 'kill $PID 2>/dev/null' EXIT
sleep 0.5
if [ "$WHAT" != consumers ]; then
    "$VENV/bin/python" "$HERE/drive_clients.py" "$PORT"
    java -cp "$JARS/*" "$HERE/JavaProducer.java" "$PORT"
fi
if [ "$WHAT" != producers ]; then
    "$VENV/bin/python" "$HERE/drive_consumers.py" "$PORT"
    java -cp "$JARS/*" "$HERE/JavaConsumer.java" "$PORT"
fi
sleep 0.5
mkdir -p "$OUT"
cp "$TMP"/*.bin "$OUT"/
ls -l "$TMP"
