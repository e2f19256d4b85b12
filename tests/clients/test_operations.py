"""Operating a cluster: `sluice-admin cluster status` and `cluster assignments`, the Java
AdminClient's describeMetadataQuorum(), and the consumer-group lag and fetch read metrics, on
one broker and on three."""

import time

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from conftest import run_java
from test_cluster import start_cluster
from test_connect import scrape
from test_produce_fetch import consume_to_end, create_topic, produce_all
from test_tools import admin, admin_json, table


def wait_for(condition, timeout=20, interval=0.1, what="the condition"):
    """Polls `condition` until it returns something truthy; returns that, or fails."""
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        last = condition()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}; last value: {last!r}")


def quorum(broker):
    out = run_java("DescribeQuorum.java", broker.bootstrap)
    return dict(line.split("=", 1) for line in out.strip().splitlines())


def commit(bootstrap, group, topic, offsets):
    """Commits {partition: offset} for `group` without joining it."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        c.commit(offsets=[TopicPartition(topic, p, o) for p, o in offsets.items()], asynchronous=False)
    finally:
        c.close()


def metadata_leaders(bootstrap, topic):
    """{partition: leader} as librdkafka sees it."""
    md = AdminClient({"bootstrap.servers": bootstrap}).list_topics(topic=topic, timeout=10)
    return {p.id: p.leader for p in md.topics[topic].partitions.values()}


def lag_series(broker, group):
    """{(topic, partition): lag} that `broker` exports for `group`."""
    out = {}
    for name, value in scrape(broker).items():
        if name.startswith("sluice_consumergroup_lag{") and f'consumergroup="{group}"' in name:
            labels = dict(kv.split("=", 1) for kv in name[name.index("{") + 1:-1].split(","))
            out[(labels["topic"].strip('"'), int(labels["partition"].strip('"')))] = value
    return out


def test_cluster_status_on_one_broker(broker):
    status = admin_json(broker, "cluster", "status")
    assert status["controller"] == 1 and status["cluster_id"]
    assert status["brokers"] == [{"id": 1, "host": "127.0.0.1", "port": broker.port, "rack": None, "alive": True}]
    raft = status["raft"]
    assert raft["leader"] == 1 and raft["term"] >= 1 and raft["high_watermark"] > 0
    [voter] = raft["voters"]
    assert voter["id"] == 1 and voter["leader"] and voter["lag"] == 0
    assert voter["log_end_offset"] >= raft["high_watermark"]
    assert raft["observers"] == []

    text = admin(broker, "cluster", "status").stdout
    head, brokers, raft_text = text.split("\n\n", 2)
    assert head == f"Cluster: {status['cluster_id']}  Controller: 1"
    assert table(brokers) == [{"BROKER": "1", "HOST:PORT": f"127.0.0.1:{broker.port}", "RACK": "-", "ALIVE": "yes"}]
    assert raft_text.startswith("Raft: leader 1  term ")
    voters = table(raft_text.split("\n\n", 1)[1])
    assert [(v["VOTER"], v["ROLE"], v["LAG"], v["LAST_FETCH"]) for v in voters] == [("1", "leader", "0", "-")]


def test_java_admin_describes_the_metadata_quorum_of_one_broker(broker):
    q = quorum(broker)
    assert q["leaderId"] == "1" and int(q["leaderEpoch"]) >= 1 and int(q["highWatermark"]) > 0
    [voter] = q["voters"].split(",")
    replica, end, last_fetch, caught_up = voter.split(":")
    # KIP-836: no fetch time for the leader itself; caught up "now".
    assert replica == "1" and int(end) >= int(q["highWatermark"]) and last_fetch == "-1"
    assert abs(int(caught_up) - time.time() * 1000) < 60_000
    assert q["observers"] == "0"
    assert q["nodes"] == f"1@127.0.0.1:{broker.port}"


def test_cluster_assignments_on_one_broker(broker):
    admin(broker, "topic", "create", "placed", "-p", 5)
    produce_all(broker.bootstrap, "placed", [(p, None, b"x" * 100, None) for p in range(5) for _ in range(p)], acks="all")
    out = admin_json(broker, "cluster", "assignments")
    pchannels = {p["pchannel"]: p for p in out["pchannels"]}
    assert sorted(pchannels) == list(range(16))
    assert all(p["owner"] == 1 and p["state"] == "ASSIGNED" and p["term"] >= 1 for p in pchannels.values())
    assert all(p["log_dir"].endswith("/pchannels/pchannel-%04d" % i) for i, p in pchannels.items())
    assert out["unreachable_brokers"] == []
    # 50 offsets partitions, 50 transaction state partitions and 5 of ours, each on exactly one
    # pchannel.
    assert sum(p["partitions"] for p in pchannels.values()) == 50 + 50 + 5
    ours = [p for p in out["partitions"] if p["topic"] == "placed"]
    assert [p["partition"] for p in ours] == [0, 1, 2, 3, 4]
    # Partitions of one topic go to different pchannels; each partition's epoch is its term.
    assert len({p["pchannel"] for p in ours}) == 5
    for p in ours:
        assert p["leader"] == 1 and p["error"] is None
        assert p["leader_epoch"] == pchannels[p["pchannel"]]["term"]
    # Bytes per partition grow with the records produced into it.
    sizes = [p["bytes"] for p in ours]
    assert sizes[0] == 0 and all(a < b for a, b in zip(sizes, sizes[1:])), sizes

    only = admin_json(broker, "cluster", "assignments", "placed")
    assert only["partitions"] == ours
    text = admin(broker, "cluster", "assignments", "placed").stdout
    pc_text, p_text = text.split("\n\n")
    assert len(table(pc_text)) == 16
    assert [(r["TOPIC"], r["PARTITION"], r["PCHANNEL"], r["LEADER"]) for r in table(p_text)] == [
        ("placed", str(p["partition"]), str(p["pchannel"]), "1") for p in ours
    ]
    assert not any(p["topic"].startswith("__") for p in admin_json(broker, "cluster", "assignments", "--exclude-internal")["partitions"])
    missing = admin(broker, "cluster", "assignments", "nope", expect=1)
    assert "UNKNOWN_TOPIC_OR_PARTITION (3)" in missing.stderr


def test_consumer_group_lag_metric_on_one_broker(broker):
    create_topic(broker.bootstrap, "lagged", partitions=2)
    produce_all(broker.bootstrap, "lagged", [(0, None, b"v", None)] * 10 + [(1, None, b"v", None)] * 3, acks="all")
    commit(broker.bootstrap, "lag-group", "lagged", {0: 4, 1: 3})
    wait_for(lambda: lag_series(broker, "lag-group") == {("lagged", 0): 6, ("lagged", 1): 0},
             what="lag 6 and 0")
    m = scrape(broker)
    assert m['sluice_consumergroup_current_offset{consumergroup="lag-group",partition="0",topic="lagged"}'] == 4
    # More records: the lag grows; a commit at the end clears it.
    produce_all(broker.bootstrap, "lagged", [(0, None, b"v", None)] * 5, acks="all")
    wait_for(lambda: lag_series(broker, "lag-group").get(("lagged", 0)) == 11, what="lag 11")
    commit(broker.bootstrap, "lag-group", "lagged", {0: 15})
    wait_for(lambda: lag_series(broker, "lag-group") == {("lagged", 0): 0, ("lagged", 1): 0}, what="lag 0")
    # A deleted group disappears from the scrape.
    admin(broker, "group", "delete", "lag-group")
    wait_for(lambda: lag_series(broker, "lag-group") == {} or None, what="the group's series to go")


def test_fetch_reads_are_split_into_catch_up_and_tailing(broker_factory):
    # 256 KiB segments: 1.5 MiB in one partition seals several (in batches that fit one).
    broker = broker_factory(["-o", "log.segment.bytes=262144"])
    create_topic(broker.bootstrap, "reads", partitions=1)
    produce_all(broker.bootstrap, "reads", [(0, None, b"r" * 1000, None)] * 1500, acks="all",
                **{"batch.size": 65536})

    def reads():
        m = scrape(broker)
        return {mode: (m[f'sluice_fetch_reads_total{{mode="{mode}"}}'], m[f'sluice_fetch_read_bytes_total{{mode="{mode}"}}'])
                for mode in ("tailing", "catchup")}

    before = reads()
    # The first record lies in a sealed segment: a catch-up read.
    admin(broker, "consume", "reads", "--from", "0", "-n", 1)
    after_start = reads()
    assert after_start["catchup"][0] > before["catchup"][0]
    assert after_start["catchup"][1] >= before["catchup"][1] + 1000
    assert after_start["tailing"] == before["tailing"]
    # The last record lies in the active segment: a tailing read.
    admin(broker, "consume", "reads", "--from", "1499", "-n", 1)
    after_end = reads()
    assert after_end["tailing"][0] > after_start["tailing"][0]
    assert after_end["tailing"][1] >= after_start["tailing"][1] + 1000
    assert after_end["catchup"] == after_start["catchup"]


def test_cluster_status_on_three_brokers_follows_the_raft_leader(broker_factory):
    brokers = start_cluster(broker_factory)
    by_id = {i + 1: b for i, b in enumerate(brokers)}
    ports = {i: b.port for i, b in by_id.items()}

    def settled(b):
        s = admin_json(b, "cluster", "status")
        voters = s["raft"]["voters"]
        # Followers have answered the leader and are caught up to the high watermark.
        ok = (s["raft"]["leader"] in ports and len(voters) == 3
              and all(v["lag"] is not None and v["log_end_offset"] >= 0 for v in voters)
              and all(v["leader"] or v["last_fetch_timestamp"] > 0 for v in voters))
        return s if ok else None

    statuses = [wait_for(lambda b=b: settled(b), what=f"a settled quorum seen from port {b.port}") for b in brokers]
    leader = statuses[0]["raft"]["leader"]
    for s in statuses:
        assert {(b["id"], b["port"], b["alive"]) for b in s["brokers"]} == {(i, p, True) for i, p in ports.items()}
        assert s["controller"] == leader and s["raft"]["leader"] == leader
        assert [v["id"] for v in s["raft"]["voters"]] == [1, 2, 3]
        assert [v["id"] for v in s["raft"]["voters"] if v["leader"]] == [leader]

    # The Java AdminClient gets the same quorum from every broker (followers forward it).
    for b in brokers:
        q = quorum(b)
        assert q["leaderId"] == str(leader)
        assert sorted(v.split(":")[0] for v in q["voters"].split(",")) == ["1", "2", "3"]
        assert int(q["highWatermark"]) > 0 and q["observers"] == "0"
        assert q["nodes"] == ",".join(f"{i}@127.0.0.1:{p}" for i, p in sorted(ports.items()))

    owned = {p["pchannel"] for p in admin_json(brokers[0], "cluster", "assignments")["pchannels"] if p["owner"] == leader}
    assert owned, "every broker owns some pchannels"

    # kill -9 the Raft leader: a survivor reports a new leader, then the old one as not alive.
    by_id[leader].kill()
    survivor = next(b for i, b in by_id.items() if i != leader)
    # Until its lease runs out the dead broker is still listed: assignments says it cannot
    # reach it, and no live broker serves its pchannels.
    early = admin_json(survivor, "cluster", "assignments")
    assert early["unreachable_brokers"] == [leader]
    assert {p["pchannel"] for p in early["pchannels"] if p["state"] == "UNAVAILABLE"} == owned
    # Right after the crash views may differ for a moment; a settled survivor agrees with itself.
    new = wait_for(lambda: (s := admin_json(survivor, "cluster", "status"))["raft"]["leader"] not in (-1, leader)
                   and s["controller"] == s["raft"]["leader"] and s, what="a new Raft leader")
    new_leader = new["raft"]["leader"]
    down = wait_for(lambda: [b for b in admin_json(survivor, "cluster", "status")["brokers"] if not b["alive"]],
                    timeout=30, what="the killed broker to be reported down")
    assert down == [{"id": leader, "host": "127.0.0.1", "port": ports[leader], "rack": None, "alive": False}]
    text = admin(survivor, "cluster", "status").stdout
    rows = {r["BROKER"]: r["ALIVE"] for r in table(text.split("\n\n")[1])}
    assert rows == {str(i): ("no" if i == leader else "yes") for i in ports}
    assert f"Raft: leader {new_leader}  " in text
    q = quorum(survivor)
    assert q["leaderId"] == str(new_leader)
    # Once it is down, its partitions have no leader (no other broker has their data).
    late = wait_for(lambda: (a := admin_json(survivor, "cluster", "assignments"))["unreachable_brokers"] == []
                    and all(p["leader"] == -1 for p in a["partitions"] if p["pchannel"] is None) and a,
                    what="the dead broker's partitions to be unavailable")
    assert {p["pchannel"] for p in late["pchannels"] if p["state"] == "UNAVAILABLE"} == owned
    assert all(p["owner"] is None for p in late["pchannels"] if p["pchannel"] in owned)
    orphans = [p for p in late["partitions"] if p["pchannel"] is None]
    assert orphans and all(p["leader"] == -1 and p["error"] == "LEADER_NOT_AVAILABLE" for p in orphans)


def test_cluster_assignments_and_lag_on_three_brokers(broker_factory):
    brokers = start_cluster(broker_factory)
    first = brokers[0]
    create_topic(first.bootstrap, "spread-ops", partitions=6)
    out = admin_json(brokers[1], "cluster", "assignments", "spread-ops")
    pchannels = {p["pchannel"]: p for p in out["pchannels"]}
    assert sorted(pchannels) == list(range(16))
    assert all(p["state"] == "ASSIGNED" for p in pchannels.values())
    owners = {p["owner"] for p in pchannels.values()}
    assert owners == {1, 2, 3}, f"the pool should be spread over the three brokers: {owners}"
    # Every partition is placed, on a pchannel its leader owns, at that pchannel's term; and
    # librdkafka sees the same leaders.
    leaders = metadata_leaders(first.bootstrap, "spread-ops")
    assert [p["partition"] for p in out["partitions"]] == list(range(6))
    for p in out["partitions"]:
        owner = pchannels[p["pchannel"]]
        assert p["leader"] == owner["owner"] == leaders[p["partition"]]
        assert p["leader_epoch"] == owner["term"]
    # Each broker's log dirs report only its own pchannels: the union is the pool, no overlap.
    assert sum(p["partitions"] for p in pchannels.values()) == 50 + 50 + 6

    # Lag is reported by the group's coordinator, with log end offsets of partitions served
    # by the other brokers.
    produce_all(first.bootstrap, "spread-ops", [(p, None, b"v", None) for p in range(6) for _ in range(p + 4)], acks="all")
    commit(first.bootstrap, "spread-group", "spread-ops", {p: 2 for p in range(6)})
    coordinator = admin_json(first, "group", "describe", "spread-group")["coordinator"]
    by_id = {i + 1: b for i, b in enumerate(brokers)}
    assert len({leaders[p] for p in range(6)} - {coordinator}) > 0, "some partitions live elsewhere"
    expected = {("spread-ops", p): p + 4 - 2 for p in range(6)}
    wait_for(lambda: lag_series(by_id[coordinator], "spread-group") == expected, what=f"lag {expected}")
    for i, b in by_id.items():
        if i != coordinator:
            assert lag_series(b, "spread-group") == {}
    assert len(consume_to_end(first.bootstrap, "spread-ops", 6)) == sum(p + 4 for p in range(6))
