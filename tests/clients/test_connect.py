"""Real clients connect, negotiate versions and read cluster metadata; bad input is refused
without disturbing other connections."""

import socket
import struct
import time
import urllib.request

from confluent_kafka.admin import AdminClient
from kafka import KafkaAdminClient

from conftest import run_java


def test_librdkafka_reads_cluster_metadata(broker):
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    md = admin.list_topics(timeout=10)
    assert list(md.brokers) == [1]
    assert md.brokers[1].host == "127.0.0.1"
    assert md.brokers[1].port == broker.port
    assert md.controller_id == 1
    assert not [t for t in md.topics if not t.startswith("__")]


def test_kafka_python_negotiates_versions(broker):
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=10000)
    try:
        cluster = admin.describe_cluster()
        assert [b["broker_id"] for b in cluster["brokers"]] == [1]
        assert cluster["brokers"][0]["port"] == broker.port
        assert cluster["cluster_id"]
    finally:
        admin.close()


def test_java_admin_describes_cluster(broker):
    out = run_java("DescribeCluster.java", broker.bootstrap)
    lines = dict(line.split("=", 1) for line in out.strip().splitlines())
    assert lines["nodes"] == f"1@127.0.0.1:{broker.port}"
    assert lines["controller"] == "1"
    assert lines["clusterId"]


def api_versions_frame(version, correlation_id, client_id=b"raw"):
    # Request header v1 for v0-v2, v2 (flexible, with an empty tag buffer) for v3+.
    header = struct.pack(">hhi", 18, version, correlation_id)
    header += struct.pack(">h", len(client_id)) + client_id
    body = b""
    if version >= 3:
        header += b"\x00"
        body = b"\x04raw\x021\x00"  # client software name and version, no tags
    payload = header + body
    return struct.pack(">i", len(payload)) + payload


def read_frame(sock):
    def read_exact(n):
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("closed")
            data += chunk
        return data

    (size,) = struct.unpack(">i", read_exact(4))
    return read_exact(size)


def connect(broker):
    sock = socket.create_connection(("127.0.0.1", broker.port), timeout=10)
    return sock


def assert_closed(sock):
    sock.settimeout(10)
    try:
        assert sock.recv(1) == b""
    except ConnectionResetError:
        pass


def test_unknown_api_versions_version_gets_v0_answer(broker):
    with connect(broker) as sock:
        sock.sendall(api_versions_frame(99, 42))
        frame = read_frame(sock)
        correlation_id, error_code, count = struct.unpack(">ihi", frame[:10])
        assert correlation_id == 42
        assert error_code == 35  # UNSUPPORTED_VERSION
        keys = {struct.unpack(">hhh", frame[10 + 6 * i : 16 + 6 * i])[0] for i in range(count)}
        assert {0, 1, 3, 18} <= keys  # Produce, Fetch, Metadata, ApiVersions
        # The connection stays usable for a supported version.
        sock.sendall(api_versions_frame(3, 43))
        frame = read_frame(sock)
        assert struct.unpack(">ih", frame[:6]) == (43, 0)


def test_bad_input_closes_only_that_connection(broker):
    healthy = connect(broker)
    cases = [
        struct.pack(">i", 0x7FFFFFF0),  # a frame far above socket.request.max.bytes
        struct.pack(">i", 8) + struct.pack(">hhi", 32000, 0, 7),  # unknown API key
        struct.pack(">i", 11) + struct.pack(">hhihb", 3, 999, 8, -1, 0),  # Metadata v999, header v2
        struct.pack(">i", 10) + struct.pack(">hhih", 3, 12, 9, 200),  # truncated header
    ]
    for frame in cases:
        with connect(broker) as bad:
            bad.sendall(frame)
            assert_closed(bad)
    healthy.sendall(api_versions_frame(3, 77))
    assert struct.unpack(">ih", read_frame(healthy)[:6]) == (77, 0)
    healthy.close()
    rejected = broker.wait_for_log(lambda r: r.get("msg") == "request rejected", count=len(cases))
    assert len(rejected) == len(cases)
    reasons = " | ".join(r["reason"] for r in rejected)
    assert "exceeds the limit" in reasons and "unknown api key" in reasons and "unsupported version" in reasons


def scrape(broker):
    body = urllib.request.urlopen(f"http://127.0.0.1:{broker.metrics_port}/metrics", timeout=10).read().decode()
    values = {}
    for line in body.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


def test_metrics_endpoint_counts_requests_and_records(broker):
    from test_produce_fetch import consume_all, create_topic, produce_all

    create_topic(broker.bootstrap, "metered")
    produce_all(broker.bootstrap, "metered", [(0, None, b"x" * 100, None) for _ in range(10)], acks="all")
    assert len(consume_all(broker.bootstrap, "metered", 1, 10)) == 10
    m = scrape(broker)
    assert m['sluice_requests_total{api="ApiVersions"}'] >= 1
    assert m['sluice_requests_total{api="Metadata"}'] >= 1
    assert m['sluice_requests_total{api="Produce"}'] >= 1
    assert m['sluice_requests_total{api="Fetch"}'] >= 1
    assert m['sluice_broker_topic_messages_in_total{topic="metered"}'] == 10
    assert m['sluice_broker_topic_bytes_in_total{topic="metered"}'] > 1000
    assert m['sluice_broker_topic_bytes_out_total{topic="metered"}'] >= m['sluice_broker_topic_bytes_in_total{topic="metered"}']
    assert sum(v for k, v in m.items() if k.startswith("sluice_pchannel_fsync_seconds_count")) >= 1
    assert sum(v for k, v in m.items() if k.startswith("sluice_pchannel_group_commit_bytes_count")) >= 1
    assert m["sluice_connections_active"] >= 0
    assert m["sluice_process_resident_memory_bytes"] > 0
    # State gauges are refreshed every 2 s: wait for the partition's log end offset to show.
    key = 'sluice_partition_log_end_offset{partition="0",topic="metered"}'
    deadline = time.time() + 10
    while scrape(broker).get(key) != 10 and time.time() < deadline:
        time.sleep(0.2)
    m = scrape(broker)
    assert m[key] == 10
    assert m['sluice_partition_log_start_offset{partition="0",topic="metered"}'] == 0
    assert m["sluice_raft_leader_id"] == 1 and m["sluice_raft_term"] >= 1 and m["sluice_raft_applied_index"] > 0


def test_sigterm_shuts_down_cleanly(broker):
    assert broker.stop() == 0
    assert any(r.get("msg") == "shutdown complete" for r in broker.log_records())


def test_grafana_dashboard_uses_exported_metrics(broker):
    import json
    import re
    from pathlib import Path

    from confluent_kafka.admin import AdminClient

    from test_produce_fetch import consume_all, create_topic, produce_all

    # Traffic that makes every series exist: records in and out, an error, a rejected frame.
    create_topic(broker.bootstrap, "dash")
    produce_all(broker.bootstrap, "dash", [(0, None, b"x", None)], acks="all")
    consume_all(broker.bootstrap, "dash", 1, 1)
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    error = admin.delete_topics(["no-such-topic"])["no-such-topic"].exception(10)
    assert error is not None and error.args[0].code() == 3  # UNKNOWN_TOPIC_OR_PARTITION
    with connect(broker) as bad:
        bad.sendall(struct.pack(">i", 0x7FFFFFF0))
        assert_closed(bad)
    broker.wait_for_log(lambda r: r.get("msg") == "request rejected")
    # A group's commit, so the coordinator exports its lag (refreshed every 2 s).
    from test_operations import commit, wait_for
    commit(broker.bootstrap, "dash-group", "dash", {0: 0})
    wait_for(lambda: any(n.startswith("sluice_consumergroup_lag{") for n in scrape(broker)), what="the lag series")

    exported = {name.split("{")[0] for name in scrape(broker)}
    dashboard = json.loads((Path(__file__).parents[2] / "docs/grafana-dashboard.json").read_text())
    used = set()
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            used |= set(re.findall(r"sluice_[a-z_]+", target["expr"]))
    assert used, "the dashboard queries no metric"
    assert used <= exported, f"dashboard queries metrics the broker does not export: {used - exported}"


def produce_acks0_frame(correlation_id, topic, records):
    # Produce v3 (request header v1): no transactional id, acks=0, one partition of `topic`.
    header = struct.pack(">hhi", 0, 3, correlation_id) + struct.pack(">h", 3) + b"raw"
    name = topic.encode()
    body = struct.pack(">hhi", -1, 0, 1000)
    body += struct.pack(">i", 1) + struct.pack(">h", len(name)) + name
    body += struct.pack(">i", 1) + struct.pack(">i", 0) + struct.pack(">i", len(records)) + records
    payload = header + body
    return struct.pack(">i", len(payload)) + payload


def test_failed_acks0_produce_closes_after_the_answers_before_it(broker):
    # acks=0 has no response to carry an error, so the broker closes the connection (as Kafka
    # does): the request before it is answered, the one after it is not.
    with connect(broker) as sock:
        sock.sendall(
            api_versions_frame(3, 1)
            + produce_acks0_frame(2, "no-such-topic", b"\x00" * 70)
            + api_versions_frame(3, 3)
        )
        assert struct.unpack(">ih", read_frame(sock)[:6]) == (1, 0)
        assert_closed(sock)
    # Other connections are unaffected.
    with connect(broker) as sock:
        sock.sendall(api_versions_frame(3, 4))
        assert struct.unpack(">ih", read_frame(sock)[:6]) == (4, 0)
