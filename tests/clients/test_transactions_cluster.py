"""Transactions across three brokers: a transaction's partitions live on pchannels owned by
different brokers than its coordinator, so the coordinator writes markers on other brokers with
Kafka's WriteTxnMarkers request. read_committed consumers on every broker see the committed
records and none of the aborted ones."""

import re
import time
import urllib.request

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from test_cluster import metadata, start_cluster


def read_all(bootstrap, topic, partitions, isolation):
    """Every record of the topic up to the partitions' current ends (LSO for read_committed)."""
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"reader-{isolation}",
        "isolation.level": isolation,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
    })
    try:
        tps = [TopicPartition(topic, p, 0) for p in range(partitions)]
        ends = {}
        for tp in tps:
            _, high = consumer.get_watermark_offsets(tp, timeout=10)
            ends[tp.partition] = high
        consumer.assign(tps)
        values = []
        positions = {p: 0 for p in range(partitions)}
        deadline = time.time() + 30
        # Control records take offsets but are never delivered: a partition is done when the
        # consumer's position reaches the end offset.
        while time.time() < deadline:
            msg = consumer.poll(0.2)
            if msg is not None and not msg.error():
                values.append(msg.value().decode())
            for tp in consumer.position(tps):
                positions[tp.partition] = tp.offset
            if all(positions[p] >= ends[p] for p in ends):
                break
        else:
            raise AssertionError(f"did not reach the end offsets {ends}: at {positions}")
        return sorted(values)
    finally:
        consumer.close()


def test_transactions_spanning_brokers_commit_and_abort_everywhere(broker_factory):
    brokers = start_cluster(broker_factory)
    admin = AdminClient({"bootstrap.servers": brokers[0].bootstrap})
    admin.create_topics([NewTopic("txn-spread", num_partitions=6, replication_factor=1)])["txn-spread"].result(15)
    leaders = {p.id: p.leader for p in
               metadata(brokers[1].bootstrap, "txn-spread").topics["txn-spread"].partitions.values()}
    assert len(set(leaders.values())) >= 2, f"partitions should be spread over brokers: {leaders}"

    producer = Producer({"bootstrap.servers": brokers[2].bootstrap, "transactional.id": "spread-tx"})
    producer.init_transactions(30)
    producer.begin_transaction()
    for i in range(60):
        producer.produce("txn-spread", partition=i % 6, value=f"commit-{i}")
    producer.commit_transaction(30)
    producer.begin_transaction()
    for i in range(60):
        producer.produce("txn-spread", partition=i % 6, value=f"abort-{i}")
    producer.flush(30)
    producer.abort_transaction(30)

    committed = sorted(f"commit-{i}" for i in range(60))
    for b in brokers:
        assert read_all(b.bootstrap, "txn-spread", 6, "read_committed") == committed
    everything = read_all(brokers[0].bootstrap, "txn-spread", 6, "read_uncommitted")
    assert everything == sorted(committed + [f"abort-{i}" for i in range(60)])
    # The coordinator reached the partitions of the other brokers with WriteTxnMarkers.
    remote_markers = sum(written_marker_requests(b) for b in brokers)
    assert remote_markers >= 2, "no broker received WriteTxnMarkers from the coordinator"


def written_marker_requests(broker):
    body = urllib.request.urlopen(f"http://127.0.0.1:{broker.metrics_port}/metrics", timeout=10).read().decode()
    found = re.search(r'^sluice_requests_total\{api="WriteTxnMarkers"\} (\d+)', body, re.M)
    return int(found.group(1)) if found else 0
