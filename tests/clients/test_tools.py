"""sluice-admin and sluice-bench against a real broker: every subcommand, its output (tables and
JSON) and its exit codes (0 ok, 1 Kafka error, 2 usage or connection), cross-checked with
confluent-kafka (librdkafka) and kafka-python's murmur2.

The binaries come from TEST_SLUICE_ADMIN / TEST_SLUICE_BENCH, else from the cargo target
directory ($CARGO_TARGET_DIR or ./target, release profile).
"""

import json
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from kafka.partitioner.default import murmur2

REPO = Path(__file__).resolve().parents[2]
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))


def tool(env, name):
    """The binary's path; a missing binary fails the test that needs it (not the collection)."""
    path = Path(os.environ.get(env, TARGET / "release" / name))
    if not path.is_file():
        pytest.fail(f"{name} not found at {path}: build it with `cargo build --release -p sluice-tools` or set {env}")
    return str(path)


def admin_bin():
    return tool("TEST_SLUICE_ADMIN", "sluice-admin")


def bench_bin():
    return tool("TEST_SLUICE_BENCH", "sluice-bench")


def admin(broker, *args, stdin=None, expect=0):
    """Runs sluice-admin against `broker`; asserts the exit code; returns the process."""
    proc = subprocess.run(
        [admin_bin(), "-b", broker.bootstrap, *map(str, args)],
        input=stdin, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == expect, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc


def admin_json(broker, *args):
    return json.loads(admin(broker, *args, "--json").stdout)


def java_partition(key, partitions):
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def table(text):
    """Parses an aligned table into dicts keyed by the header names."""
    lines = text.strip().splitlines()
    header = lines[0].split()
    return [dict(zip(header, line.split())) for line in lines[1:]]


def test_topic_subcommands(broker):
    out = admin(broker, "topic", "create", "tools-a", "--partitions", 3, "--config", "retention.ms=3600000").stdout
    assert out == "created topic tools-a (3 partitions)\n"
    created = admin_json(broker, "topic", "create", "tools-b", "-p", 1)
    assert created["created"] is True and created["partitions"] == 1

    dup = admin(broker, "topic", "create", "tools-a", "-p", 3, expect=1)
    assert "TOPIC_ALREADY_EXISTS (36)" in dup.stderr and "--if-not-exists" in dup.stderr
    assert admin(broker, "topic", "create", "tools-a", "--if-not-exists").stdout == "topic tools-a exists already\n"

    rows = table(admin(broker, "topic", "list", "--exclude-internal").stdout)
    assert [(r["TOPIC"], r["PARTITIONS"]) for r in rows] == [("tools-a", "3"), ("tools-b", "1")]
    listed = admin_json(broker, "topic", "list")
    # The broker's internal topics are listed too, as Kafka lists them.
    assert {t["topic"]: t["partitions"] for t in listed} == {
        "tools-a": 3, "tools-b": 1, "__consumer_offsets": 50, "__transaction_state": 50}

    text = admin(broker, "topic", "describe", "tools-a").stdout
    assert text.startswith("Topic: tools-a  TopicId: ")
    assert "Partitions: 3  Configs: retention.ms=3600000" in text
    (desc,) = admin_json(broker, "topic", "describe", "tools-a")
    assert [p["partition"] for p in desc["partitions"]] == [0, 1, 2]
    assert all(p["leader"] >= 0 and p["leader_epoch"] >= 0 and p["isr"] == p["replicas"] for p in desc["partitions"])
    assert desc["configs"] == {"retention.ms": "3600000"}

    out = admin(broker, "topic", "alter", "tools-a", "--partitions", 4, "--config", "retention.bytes=1048576",
                "--delete-config", "retention.ms").stdout
    assert out == "altered topic tools-a: partitions=4, retention.bytes=1048576, -retention.ms\n"
    (desc,) = admin_json(broker, "topic", "describe", "tools-a")
    assert len(desc["partitions"]) == 4 and desc["configs"] == {"retention.bytes": "1048576"}
    shrink = admin(broker, "topic", "alter", "tools-a", "--partitions", 2, expect=1)
    assert "INVALID_PARTITIONS (37)" in shrink.stderr
    assert "nothing to alter" in admin(broker, "topic", "alter", "tools-a", expect=2).stderr

    grown = admin_json(broker, "topic", "add-partitions", "tools-a", "--count", 2)
    assert (grown["before"], grown["after"]) == (4, 6)
    assert len(admin_json(broker, "topic", "describe", "tools-a")[0]["partitions"]) == 6

    assert admin(broker, "topic", "delete", "tools-a").stdout == "deleted tools-a\n"
    missing = admin(broker, "topic", "describe", "tools-a", expect=1)
    assert "UNKNOWN_TOPIC_OR_PARTITION (3)" in missing.stderr and "topic list" in missing.stderr
    assert "UNKNOWN_TOPIC_OR_PARTITION" in admin(broker, "topic", "delete", "tools-a", expect=1).stderr
    gone = admin_json(broker, "topic", "delete", "tools-a", "tools-b", "--if-exists")
    assert gone == {"deleted": ["tools-b"], "missing": ["tools-a"]}
    assert admin_json(broker, "topic", "list", "--exclude-internal") == []


def test_config_subcommands(broker):
    admin(broker, "topic", "create", "cfg", "-p", 1)
    assert admin(broker, "config", "describe", "--topic", "cfg").stdout == (
        "topic cfg has no config overrides (--all shows every config)\n"
    )
    out = admin(broker, "config", "set", "--topic", "cfg", "retention.ms=60000", "message.timestamp.type=LogAppendTime")
    assert out.stdout == "updated topic cfg: retention.ms=60000, message.timestamp.type=LogAppendTime\n"
    rows = table(admin(broker, "config", "describe", "--topic", "cfg").stdout)
    assert {r["NAME"]: (r["VALUE"], r["SOURCE"]) for r in rows} == {
        "message.timestamp.type": ("LogAppendTime", "DYNAMIC_TOPIC_CONFIG"),
        "retention.ms": ("60000", "DYNAMIC_TOPIC_CONFIG"),
    }
    admin(broker, "config", "delete", "--topic", "cfg", "retention.ms")
    every = admin_json(broker, "config", "describe", "--topic", "cfg", "--all")
    by_name = {c["name"]: c for c in every["configs"]}
    assert by_name["retention.ms"]["source"] == "DEFAULT_CONFIG"
    assert by_name["retention.ms"]["value"] == str(168 * 3600 * 1000)
    assert by_name["message.timestamp.type"]["value"] == "LogAppendTime"

    bad = admin(broker, "config", "set", "--topic", "cfg", "cleanup.policy=compact", expect=1)
    assert "INVALID_CONFIG (40)" in bad.stderr
    assert "KEY=VALUE" in admin(broker, "config", "set", "--topic", "cfg", "novalue", expect=2).stderr

    broker_cfg = admin_json(broker, "config", "describe", "--broker", "--all")
    assert broker_cfg["resource"].startswith("broker ")
    names = {c["name"] for c in broker_cfg["configs"]}
    assert {"log.dirs", "num.partitions"} <= names
    node_id = broker_cfg["resource"].split()[1]
    assert admin_json(broker, "config", "describe", "--broker", node_id, "--all") == broker_cfg


def test_produce_consume_follow_and_offsets(broker):
    admin(broker, "topic", "create", "events", "-p", 4)
    before = int(time.time() * 1000)
    out = admin_json(broker, "produce", "events", "-k", "user-1", "-H", "source=cli", "-H", "trace=t1", "hello", "world")
    p_user = java_partition(b"user-1", 4)
    assert out["records"] == 2
    assert out["batches"] == [{"partition": p_user, "base_offset": 0, "records": 2}]

    # Keys from stdin go where the Java client would put them.
    lines = "".join(f"k{i}:v{i}\n" for i in range(20))
    rows = table(admin(broker, "produce", "events", "--key-separator", ":", "--acks", "1", stdin=lines).stdout)
    assert sum(int(r["RECORDS"]) for r in rows) == 20
    expected = {}
    for i in range(20):
        expected.setdefault(java_partition(f"k{i}".encode(), 4), []).append(f"v{i}")

    # librdkafka reads what sluice-admin wrote: keys, headers, values, offsets.
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "tools-check", "enable.auto.commit": False})
    c.assign([TopicPartition("events", p_user, 0)])
    first = c.poll(15)
    assert first is not None and first.error() is None
    assert (first.key(), first.value(), first.offset()) == (b"user-1", b"hello", 0)
    assert first.headers() == [("source", b"cli"), ("trace", b"t1")]
    c.close()

    # acks=0 and compression, to an explicit partition.
    assert table(admin(broker, "produce", "events", "-p", 3, "--acks", "0", "--compression", "zstd", "z1", "z2").stdout) == [
        {"TOPIC": "events", "PARTITION": "3", "BASE_OFFSET": "-", "RECORDS": "2"}
    ]

    deadline = time.time() + 10
    while True:
        offsets = {r["partition"]: r for r in admin_json(broker, "offsets", "events")}
        if offsets[3]["latest"] >= len(expected.get(3, [])) + 2 or time.time() > deadline:
            break
        time.sleep(0.2)
    for p in range(4):
        want = len(expected.get(p, [])) + (2 if p == p_user else 0) + (2 if p == 3 else 0)
        assert (offsets[p]["earliest"], offsets[p]["latest"]) == (0, want), (p, offsets)
    at = admin_json(broker, "offsets", "events", "-p", p_user, "--time", before)
    assert at == [{"topic": "events", "partition": p_user, "offset": 0, "timestamp": at[0]["timestamp"]}]
    future = admin_json(broker, "offsets", "events", "-p", 0, "--time", "2100-01-01T00:00:00Z")
    assert future[0]["offset"] == -1

    # Text: values in partition order within one fetch; keys with --print-key.
    text = admin(broker, "consume", "events", "-p", p_user, "--print-key").stdout.splitlines()
    assert text[:2] == ["user-1\thello", "user-1\tworld"]
    assert text[2:] == [f"k{i}\tv{i}" for i in range(20) if java_partition(f"k{i}".encode(), 4) == p_user] + (
        ["null\tz1", "null\tz2"] if p_user == 3 else []
    )
    everything = admin(broker, "consume", "events").stdout.splitlines()
    assert sorted(everything) == sorted(["hello", "world", "z1", "z2"] + [f"v{i}" for i in range(20)])

    # JSON lines, from an offset, a timestamp, with a count limit.
    records = [json.loads(l) for l in admin(broker, "consume", "events", "-p", p_user, "--format", "json", "--from", 1, "-n", 1).stdout.splitlines()]
    assert records == [{"topic": "events", "partition": p_user, "offset": 1, "timestamp": records[0]["timestamp"],
                        "key": "user-1", "headers": {"source": "cli", "trace": "t1"}, "value": "world"}]
    assert records[0]["timestamp"] >= before
    by_time = admin(broker, "consume", "events", "-p", p_user, "--from", f"@{before}", "-n", 1).stdout
    assert by_time == "hello\n"
    assert admin(broker, "consume", "events", "--from", "latest").stdout == ""
    assert len(admin(broker, "--json", "consume", "events", "-n", 5).stdout.splitlines()) == 5

    # --follow waits at the end of the log for new records.
    end = admin_json(broker, "offsets", "events", "-p", 1)[0]["latest"]
    follower = subprocess.Popen(
        [admin_bin(), "-b", broker.bootstrap, "consume", "events", "-p", "1", "--from", str(end), "--follow", "-n", "2", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    time.sleep(1)
    assert follower.poll() is None, "--follow returned before any record arrived"
    admin(broker, "produce", "events", "-p", 1, "late-1", "late-2")
    out, err = follower.communicate(timeout=30)
    assert follower.returncode == 0, err
    assert [(r["offset"], r["value"]) for r in map(json.loads, out.splitlines())] == [(end, "late-1"), (end + 1, "late-2")]

    # Errors: out-of-range offset and unknown partition are Kafka errors (exit 1).
    oor = admin(broker, "consume", "events", "-p", 0, "--from", 1000, expect=1)
    assert "OFFSET_OUT_OF_RANGE (1)" in oor.stderr and "offsets TOPIC" in oor.stderr
    assert "UNKNOWN_TOPIC_OR_PARTITION" in admin(broker, "produce", "events", "-p", 9, "x", expect=1).stderr
    assert "UNKNOWN_TOPIC_OR_PARTITION" in admin(broker, "produce", "no-such-topic", "x", expect=1).stderr


def test_usage_and_connection_errors_exit_2(broker):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{s.getsockname()[1]}"
    proc = subprocess.run([admin_bin(), "-b", dead, "topic", "list"], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert f"cannot talk to {dead}" in proc.stderr and "--bootstrap-server" in proc.stderr
    for args in (["topic"], ["topic", "create"], ["produce", "t", "--acks", "2"], ["consume", "t", "--from", "soon"]):
        assert admin(broker, *args, expect=2).stderr


def bench(broker, *args, expect=0):
    proc = subprocess.run(
        [bench_bin(), "-b", broker.bootstrap, "--json", "--no-progress", *map(str, args)],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == expect, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return json.loads(proc.stdout), proc.stderr


def test_bench_produce_consume_e2e(broker, tmp_path):
    s, _ = bench(broker, "produce", "-t", "bench", "-p", 4, "-n", 5000, "-s", 512, "--acks", "all",
              "--compression", "lz4", "--producers", 2)
    assert (s["mode"], s["partitions"], s["record_size"], s["acks"]) == ("produce", 4, 512, "all")
    assert s["records_sent"] == s["records_acked"] == 5000 and s["records_failed"] == 0
    assert s["records_per_sec"] > 0 and s["mib_per_sec"] > 0
    lat = s["latency_ms"]
    assert lat["count"] == 5000 and 0 < lat["p50"] <= lat["p99"] <= lat["p999"] <= lat["max"]
    assert sum(sample["records"] for sample in s["timeline"]) == 5000

    offsets = admin_json(broker, "offsets", "bench")
    assert sum(o["latest"] for o in offsets) == 5000

    c, _ = bench(broker, "consume", "-t", "bench", "-n", 5000, "--consumers", 2, "--idle-timeout-ms", 5000)
    assert c["records_consumed"] == 5000 and c["consumers"] == 2 and c["latency_ms"] is None
    assert c["records_per_sec"] > 0

    # Asking for more records than the topic holds ends at the idle timeout with exit 1.
    short, err = bench(broker, "consume", "-t", "bench", "-n", 5001, "--idle-timeout-ms", 1000, expect=1)
    assert short["records_consumed"] == 5000 and "consumed 5000 of 5001 records" in err

    svg = tmp_path / "e2e.svg"
    e, _ = bench(broker, "e2e", "-t", "bench", "-n", 2000, "--rate", 4000, "--idle-timeout-ms", 5000, "--svg", svg)
    assert e["records_acked"] == e["records_consumed"] == 2000
    assert e["latency_ms"]["count"] == 2000 and e["latency_ms"]["p50"] > 0
    assert any(sample["p99_ms"] is not None for sample in e["timeline"])
    assert svg.read_text().startswith("<svg") and "records/s" in svg.read_text()


def test_bench_commit(broker):
    # Two consumers, a group each, 1,000 asynchronous commits each with up to 16 in flight.
    s, _ = bench(broker, "commit", "-t", "bench-commits", "-p", 4, "-n", 2000, "--consumers", 2,
                 "--in-flight", 16)
    assert (s["mode"], s["consumers"], s["groups"], s["in_flight"]) == ("commit", 2, 2, 16)
    assert s["records_sent"] == s["records_acked"] == 2000 and s["records_failed"] == 0
    assert s["records_per_sec"] > 0 and s["latency_ms"]["count"] == 2000
    assert sum(sample["records"] for sample in s["timeline"]) == 2000

    # Commit k of consumer i sets partition (i + k) % 4 to offset k, so the last four commits of
    # each consumer leave a known offset on every partition, if they were stored in order.
    groups = sorted(g["group"] for g in admin_json(broker, "group", "list")
                    if g["group"].startswith("sluice-bench-commit-"))
    assert len(groups) == 2 and groups[0].endswith("-0") and groups[1].endswith("-1")
    assert committed(broker, groups[0], "bench-commits", 4) == {0: 1000, 1: 997, 2: 998, 3: 999}
    assert committed(broker, groups[1], "bench-commits", 4) == {0: 999, 1: 1000, 2: 997, 3: 998}

    # One shared group: the commits of both consumers land in it.
    s, _ = bench(broker, "commit", "-t", "bench-commits", "-n", 400, "--consumers", 2, "--shared-group",
                 "--commit-partitions", 4)
    assert s["groups"] == 1 and s["records_acked"] == 400


def committed(broker, group, topic, partitions):
    """The group's committed offsets as librdkafka reads them (partition -> offset)."""
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        tps = c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=15)
        return {tp.partition: tp.offset for tp in tps}
    finally:
        c.close()


def test_group_subcommands(broker_factory):
    broker = broker_factory(["-o", "group.initial.rebalance.delay.ms=0"])
    admin(broker, "topic", "create", "grp-t", "-p", 2)
    admin(broker, "produce", "grp-t", "-p", 0, *[f"a{i}" for i in range(10)])
    admin(broker, "produce", "grp-t", "-p", 1, *[f"b{i}" for i in range(6)])

    # A librdkafka consumer joins group g1, reads everything and commits p0=7, p1=6.
    c = Consumer({
        "bootstrap.servers": broker.bootstrap, "group.id": "g1", "client.id": "grp-client",
        "enable.auto.commit": False, "auto.offset.reset": "earliest",
    })
    c.subscribe(["grp-t"])
    seen = 0
    deadline = time.time() + 30
    while seen < 16 and time.time() < deadline:
        m = c.poll(1)
        if m is not None and m.error() is None:
            seen += 1
    assert seen == 16
    c.commit(offsets=[TopicPartition("grp-t", 0, 7), TopicPartition("grp-t", 1, 6)], asynchronous=False)

    # While it is a member: describe shows it with its assignment; reset and delete refuse.
    live = admin_json(broker, "group", "describe", "g1")
    assert live["group"] == "g1" and live["state"] == "Stable" and live["protocol_type"] == "consumer"
    assert live["protocol"] in ("range", "roundrobin", "cooperative-sticky")
    [member] = live["members"]
    # The member's address, as Kafka's InetAddress.toString() spells it.
    assert member["client_id"] == "grp-client" and member["host"] == "/127.0.0.1" and member["member_id"]
    assert member["assignment"] == [{"topic": "grp-t", "partitions": [0, 1]}]
    stable = admin_json(broker, "group", "list", "--state", "stable")
    assert {"group": "g1", "state": "Stable", "protocol_type": "consumer"} in stable
    refused = admin(broker, "group", "reset-offsets", "g1", "--topic", "grp-t", "--to-earliest", "--execute", expect=1)
    assert "NON_EMPTY_GROUP (68)" in refused.stderr and "inactive" in refused.stderr and "hint:" in refused.stderr
    busy = admin(broker, "group", "delete", "g1", expect=1)
    assert "delete group g1: NON_EMPTY_GROUP (68)" in busy.stderr and "hint:" in busy.stderr
    c.close()

    # Empty now: committed offsets against log ends.
    desc = admin_json(broker, "group", "describe", "g1")
    assert desc["state"] == "Empty" and desc["members"] == []
    assert desc["offsets"] == [
        {"topic": "grp-t", "partition": 0, "current_offset": 7, "log_end_offset": 10, "lag": 3},
        {"topic": "grp-t", "partition": 1, "current_offset": 6, "log_end_offset": 6, "lag": 0},
    ]
    text = admin(broker, "group", "describe", "g1").stdout
    assert text.startswith("Group: g1  State: Empty  ProtocolType: consumer")
    assert table(text.split("\n\n", 1)[1]) == [
        {"TOPIC": "grp-t", "PARTITION": "0", "CURRENT_OFFSET": "7", "LOG_END_OFFSET": "10", "LAG": "3"},
        {"TOPIC": "grp-t", "PARTITION": "1", "CURRENT_OFFSET": "6", "LOG_END_OFFSET": "6", "LAG": "0"},
    ]
    rows = table(admin(broker, "group", "list").stdout)
    assert {"GROUP": "g1", "STATE": "Empty", "PROTOCOL_TYPE": "consumer"} in rows
    assert all(g["group"] != "g1" for g in admin_json(broker, "group", "list", "--state", "Stable"))

    # Dry run: a plan, nothing committed.
    plan = admin_json(broker, "group", "reset-offsets", "g1", "--topic", "grp-t", "--to-earliest")
    assert plan["executed"] is False
    assert [(p["partition"], p["current_offset"], p["new_offset"]) for p in plan["partitions"]] == [(0, 7, 0), (1, 6, 0)]
    dry = admin(broker, "group", "reset-offsets", "g1", "--topic", "grp-t", "--to-offset", 4).stdout
    assert "dry run" in dry and "--execute" in dry
    assert table(dry.split("dry run")[0]) == [
        {"TOPIC": "grp-t", "PARTITION": "0", "CURRENT_OFFSET": "7", "NEW_OFFSET": "4"},
        {"TOPIC": "grp-t", "PARTITION": "1", "CURRENT_OFFSET": "6", "NEW_OFFSET": "4"},
    ]
    assert committed(broker, "g1", "grp-t", 2) == {0: 7, 1: 6}

    # --execute commits; librdkafka sees the new offsets.
    done = admin_json(broker, "group", "reset-offsets", "g1", "--topic", "grp-t", "--to-offset", 4, "--execute")
    assert done["executed"] is True
    assert committed(broker, "g1", "grp-t", 2) == {0: 4, 1: 4}
    out = admin(broker, "group", "reset-offsets", "g1", "--topic", "grp-t", "--to-earliest", "--execute").stdout
    assert "committed the new offsets for group g1" in out
    assert committed(broker, "g1", "grp-t", 2) == {0: 0, 1: 0}
    # Out-of-range offsets move to the nearest end; a time after every record means the log end.
    clamp = admin_json(broker, "group", "reset-offsets", "g1", "--topic", "grp-t", "--to-offset", 99)
    assert [p["new_offset"] for p in clamp["partitions"]] == [10, 6]
    past = admin_json(broker, "group", "reset-offsets", "g1", "--topic", "grp-t", "--to-datetime", "2000-01-01T00:00:00Z")
    assert [p["new_offset"] for p in past["partitions"]] == [0, 0]
    admin(broker, "group", "reset-offsets", "g1", "--topic", "grp-t", "--to-datetime", "2999-01-01T00:00:00Z", "--execute")
    assert committed(broker, "g1", "grp-t", 2) == {0: 10, 1: 6}
    assert admin_json(broker, "group", "describe", "g1")["offsets"][0]["lag"] == 0

    # Usage errors exit 2.
    assert admin(broker, "group", "reset-offsets", "g1", "--topic", "grp-t", expect=2).stderr
    assert admin(broker, "group", "reset-offsets", "g1", "--topic", "grp-t", "--to-latest", "--to-earliest", expect=2).stderr
    assert "unknown group state" in admin(broker, "group", "list", "--state", "running", expect=2).stderr

    # Delete: gone from the list; deleting it again is a Kafka error.
    assert admin(broker, "group", "delete", "g1").stdout == "deleted g1\n"
    assert all(g["group"] != "g1" for g in admin_json(broker, "group", "list"))
    again = admin(broker, "group", "delete", "g1", expect=1)
    assert "delete group g1: GROUP_ID_NOT_FOUND (69)" in again.stderr and "group list" in again.stderr


def test_group_subcommands_ask_each_groups_coordinator(broker_factory):
    from test_cluster import start_cluster

    brokers = start_cluster(broker_factory)
    first = brokers[0]
    admin(first, "topic", "create", "grp-c", "-p", 3)
    admin(first, "produce", "grp-c", "-p", 0, "x", "y", "z")
    groups = [f"cg{i}" for i in range(8)]
    for i, g in enumerate(groups):
        c = Consumer({"bootstrap.servers": first.bootstrap, "group.id": g, "enable.auto.commit": False})
        c.commit(offsets=[TopicPartition("grp-c", 0, i % 4)], asynchronous=False)
        c.close()

    coordinators = set()
    for i, g in enumerate(groups):
        desc = admin_json(first, "group", "describe", g)
        coordinators.add(desc["coordinator"])
        assert desc["offsets"] == [
            {"topic": "grp-c", "partition": 0, "current_offset": i % 4, "log_end_offset": 3, "lag": max(3 - i % 4, 0)}
        ]
    # The groups are spread over several coordinators, and every request found its own.
    assert len(coordinators) > 1, coordinators
    listed = {g["group"] for g in admin_json(first, "group", "list")}
    assert set(groups) <= listed
    admin(brokers[1], "group", "reset-offsets", "cg0", "--topic", "grp-c", "--to-latest", "--execute")
    assert committed(first, "cg0", "grp-c", 1) == {0: 3}
    assert admin(brokers[2], "group", "delete", *groups).stdout == f"deleted {', '.join(groups)}\n"
    assert not set(groups) & {g["group"] for g in admin_json(first, "group", "list")}
