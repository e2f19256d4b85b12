"""Transactions (KIP-98) with real clients, librdkafka (confluent-kafka) and the Java client:
FindCoordinator for transactional ids; commits and aborts across topics and partitions, read
back at both isolation levels (read_committed never sees aborted records and stops at the last
stable offset of an open transaction; commit markers take offsets); consume-transform-produce
with the group's offsets committed by the transaction; fencing of a zombie producer by a new
one with the same transactional.id; the broker aborting a transaction that outlives its
timeout; committed transactions across broker restarts and kill -9; and a consume-transform-
produce loop that stays exactly-once while the broker and the processor are killed under it.

kafka-python has no transactional producer worth testing, so it does not appear here."""

import os
import struct
import subprocess
import threading
import time
import uuid
from collections import namedtuple
from pathlib import Path

import pytest
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient

from conftest import JARS, JAVA_DIR, run_java
from test_cluster import start_cluster
from test_groups import _request
from test_produce_fetch import create_topic

# How long one transactional call (init, flush, commit, abort) may take before the test fails.
TXN_CALL_TIMEOUT = 15
# How long a reader waits for the records or the end offset it expects.
READ_TIMEOUT = 20
COORDINATOR_NOT_AVAILABLE = 15

Sent = namedtuple("Sent", "topic partition offset value")


# Kafka looks for transactions past their timeout every 10 s; these tests look more often.
TXN_BROKER_ARGS = [
    "-o", "group.initial.rebalance.delay.ms=0",
    "-o", "transaction.abort.timed.out.transaction.cleanup.interval.ms=500",
]


@pytest.fixture
def txn_broker(broker_factory):
    return broker_factory(TXN_BROKER_ARGS)


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# ---------------------------------------------------------------------------------------------
# librdkafka helpers


def transactional_producer(bootstrap, txn_id, **config):
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": txn_id, "linger.ms": 5, **config})
    try:
        producer.init_transactions(TXN_CALL_TIMEOUT)
    except KafkaException as e:
        raise AssertionError(f"init_transactions for transactional.id {txn_id!r} failed: {e.args[0]}") from None
    return producer


def layout(tag, count, topics):
    """The (topic, partition, value) records of a transaction spread over `topics`
    ([(name, partitions)]): record i goes to topic i % len(topics), partition
    (i // len(topics)) % partitions. (TransactionalProduceConsume.java uses the same layout.)"""
    out = []
    for i in range(count):
        name, partitions = topics[i % len(topics)]
        out.append((name, (i // len(topics)) % partitions, f"{tag}-{i}".encode()))
    return out


def run_transaction(producer, records, end):
    """Runs one transaction of (topic, partition, value) records, flushed, then ended by `end`:
    "commit", "abort" or "open" (left running). Returns the delivery reports."""
    sent, errors = [], []

    def on_delivery(err, msg):
        if err is not None:
            errors.append(err)
        else:
            sent.append(Sent(msg.topic(), msg.partition(), msg.offset(), msg.value()))

    producer.begin_transaction()
    for topic, partition, value in records:
        producer.produce(topic, value=value, partition=partition, on_delivery=on_delivery)
    left = producer.flush(TXN_CALL_TIMEOUT)
    assert left == 0 and not errors, f"transactional records not delivered: {left} in flight, errors {errors[:3]}"
    if end == "commit":
        producer.commit_transaction(TXN_CALL_TIMEOUT)
    elif end == "abort":
        producer.abort_transaction(TXN_CALL_TIMEOUT)
    return sorted(sent)


def plain_produce(bootstrap, records):
    """Non-transactional (topic, partition, value) records, acks=all; returns the delivery reports."""
    sent, errors = [], []
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "acks": "all"})
    for topic, partition, value in records:
        producer.produce(topic, value=value, partition=partition,
                         on_delivery=lambda err, msg: errors.append(err) if err else
                         sent.append(Sent(msg.topic(), msg.partition(), msg.offset(), msg.value())))
    assert producer.flush(TXN_CALL_TIMEOUT) == 0 and not errors, errors[:3]
    return sorted(sent)


def reader(bootstrap, isolation, partitions):
    """A consumer outside any group reading `partitions` ((topic, partition) pairs) from their
    start, reporting the end of each partition (read_committed: the last stable offset)."""
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": unique("reader"),
        "enable.auto.commit": False,
        "enable.partition.eof": True,
        "isolation.level": isolation,
    })
    consumer.assign([TopicPartition(t, p, OFFSET_BEGINNING) for t, p in partitions])
    return consumer


def read_until_end(consumer, ends, timeout=READ_TIMEOUT):
    """Polls until every partition of `ends` ({(topic, partition): offset}, offsets > 0) has
    reported its end at or past that offset: for read_committed, the last stable offset has
    reached it, so every transaction below it is decided. Returns the records delivered
    meanwhile and the end offsets last reported."""
    got, reached = [], {}
    deadline = time.time() + timeout
    while time.time() < deadline and any(reached.get(tp, -1) < end for tp, end in ends.items()):
        msg = consumer.poll(0.2)
        if msg is None:
            continue
        if msg.error() is not None:
            if msg.error().code() == KafkaError._PARTITION_EOF:
                reached[(msg.topic(), msg.partition())] = msg.offset()
                continue
            raise AssertionError(f"consumer error: {msg.error()}")
        got.append(Sent(msg.topic(), msg.partition(), msg.offset(), msg.value()))
    missing = {tp: (reached.get(tp), end) for tp, end in ends.items() if reached.get(tp, -1) < end}
    assert not missing, (
        f"partition ends (reached, wanted) not reached in {timeout} s: {missing}; records read: {summary(got)}"
    )
    return sorted(got), reached


def read_all(bootstrap, isolation, ends, timeout=READ_TIMEOUT):
    consumer = reader(bootstrap, isolation, list(ends))
    try:
        return read_until_end(consumer, ends, timeout)[0]
    finally:
        consumer.close()


def end_offsets(bootstrap, isolation, partitions):
    """ListOffsets(latest) at this isolation level: the high watermark, or the last stable offset."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": unique("ends"), "isolation.level": isolation})
    try:
        return {(t, p): consumer.get_watermark_offsets(TopicPartition(t, p), timeout=10)[1] for t, p in partitions}
    finally:
        consumer.close()


def settled_end_offsets(bootstrap, partitions, timeout=READ_TIMEOUT):
    """High watermarks once no transaction is pending on the partitions, i.e. once the last
    stable offset has caught up (EndTxn may be answered before the markers are written)."""
    deadline = time.time() + timeout
    while True:
        hw = end_offsets(bootstrap, "read_uncommitted", partitions)
        lso = end_offsets(bootstrap, "read_committed", partitions)
        if lso == hw:
            return hw
        assert time.time() < deadline, f"transactions still pending after {timeout} s: LSO {lso}, high watermark {hw}"
        time.sleep(0.05)


def summary(records):
    """A short description of records for assertion messages."""
    text = [f"{r.topic}[{r.partition}]@{r.offset}={r.value.decode()}" for r in records[:30]]
    return ", ".join(text) + (f" ... ({len(records)} in all)" if len(records) > 30 else "")


def by_partition(records):
    out = {}
    for r in sorted(records):
        out.setdefault((r.topic, r.partition), []).append((r.offset, r.value))
    return out


def group_offsets(bootstrap, group, partitions):
    """The group's committed offsets, as OffsetFetch without require_stable answers them."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    request = [ConsumerGroupTopicPartitions(group, [TopicPartition(t, p) for t, p in partitions])]
    result = admin.list_consumer_group_offsets(request)[group].result(timeout=15)
    return {(tp.topic, tp.partition): tp.offset for tp in result.topic_partitions}


def wait_for(check, expected, timeout=READ_TIMEOUT, what="value"):
    """Polls `check()` until it returns `expected`; fails showing the last value seen."""
    deadline = time.time() + timeout
    seen = check()
    while seen != expected and time.time() < deadline:
        time.sleep(0.05)
        seen = check()
    assert seen == expected, f"{what}: expected {expected}, still {seen} after {timeout} s"
    return seen


# ---------------------------------------------------------------------------------------------
# FindCoordinator


def find_coordinator(bootstrap, key, timeout=15):
    """FindCoordinator v1 for one transactional id (key type 1), asked again while the answer is
    COORDINATOR_NOT_AVAILABLE (Kafka creates __transaction_state on first use); returns
    (error, node_id, host, port, message)."""
    k = key.encode()
    deadline = time.time() + timeout
    while True:
        body = _request(bootstrap, 10, 1, struct.pack(">h", len(k)) + k + b"\x01", False)
        error, msg_len = struct.unpack(">hh", body[4:8])
        message = body[8:8 + max(msg_len, 0)].decode()
        rest = body[8 + max(msg_len, 0):]
        node_id, host_len = struct.unpack(">ih", rest[:6])
        host = rest[6:6 + max(host_len, 0)].decode()
        port = struct.unpack(">i", rest[6 + max(host_len, 0):10 + max(host_len, 0)])[0]
        if error != COORDINATOR_NOT_AVAILABLE or time.time() > deadline:
            return error, node_id, host, port, message
        time.sleep(0.1)


def find_coordinators_v4(bootstrap, keys):
    """FindCoordinator v4 (batched, flexible) for transactional ids; [(key, node, port, error)]."""
    req = b"\x01" + bytes([len(keys) + 1]) + b"".join(bytes([len(k) + 1]) + k.encode() for k in keys) + b"\x00"
    body = _request(bootstrap, 10, 4, req, True)
    count = body[4] - 1
    pos, seen = 5, []
    for _ in range(count):
        klen = body[pos] - 1
        k = body[pos + 1:pos + 1 + klen].decode()
        pos += 1 + klen
        node_id = struct.unpack(">i", body[pos:pos + 4])[0]
        hlen = body[pos + 4] - 1
        pos += 5 + max(hlen, 0)
        port, error = struct.unpack(">ih", body[pos:pos + 6])
        pos += 6
        mlen = body[pos] - 1
        pos += 1 + max(mlen, 0) + 1  # message, tagged fields
        seen.append((k, node_id, port, error))
    return seen


def java_string_hash(s):
    """Java's String.hashCode, as a signed 32-bit integer."""
    data = s.encode("utf-16-be")
    h = 0
    for i in range(0, len(data), 2):
        h = (h * 31 + int.from_bytes(data[i:i + 2], "big")) & 0xFFFFFFFF
    return h - (1 << 32) if h >= 1 << 31 else h


def txn_state_partition(txn_id, partitions):
    """Kafka's partitionFor: Utils.abs(transactionalId.hashCode) % partitions."""
    h = java_string_hash(txn_id)
    return (0 if h == -(1 << 31) else abs(h)) % partitions


def transaction_state_leaders(bootstrap):
    """Partition -> leader of __transaction_state, from a Metadata request for all topics (asking
    for the topic by name could auto-create it as an ordinary topic)."""
    md = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10)
    topic = md.topics.get("__transaction_state")
    assert topic is not None, f"__transaction_state is not in the metadata; topics: {sorted(md.topics)}"
    return {p.id: p.leader for p in topic.partitions.values()}


def test_find_coordinator_answers_the_broker_owning_the_transactional_id(txn_broker):
    broker = txn_broker
    error, node_id, host, port, message = find_coordinator(broker.bootstrap, "txn-app-1")
    assert (error, node_id, host, port) == (0, 1, "127.0.0.1", broker.port), f"FindCoordinator(txn) said: {message!r}"
    keys = ["txn-app-1", "txn-app-2", "another"]
    assert find_coordinators_v4(broker.bootstrap, keys) == [(k, 1, broker.port, 0) for k in keys]
    leaders = transaction_state_leaders(broker.bootstrap)
    assert sorted(leaders) == list(range(50)), "transaction.state.log.num.partitions defaults to 50"
    assert set(leaders.values()) == {1}


# ---------------------------------------------------------------------------------------------
# Commit, abort, isolation levels, last stable offset (librdkafka)


def test_read_committed_sees_committed_transactions_only_and_markers_take_offsets(txn_broker):
    bootstrap = txn_broker.bootstrap
    a, b = unique("ta"), unique("tb")
    create_topic(bootstrap, a, 3)
    create_topic(bootstrap, b, 2)
    topics = [(a, 3), (b, 2)]
    partitions = [(a, p) for p in range(3)] + [(b, p) for p in range(2)]
    producer = transactional_producer(bootstrap, unique("rc"))
    txns = [
        run_transaction(producer, layout("c1", 20, topics), "commit"),
        run_transaction(producer, layout("ab", 10, topics), "abort"),
        run_transaction(producer, layout("c3", 10, topics), "commit"),
    ]
    # Each transaction touched every partition; each ended with one control record (the
    # commit or abort marker), so a partition's offsets jump by one between transactions.
    for tp in partitions:
        start = 0
        for n, txn in enumerate(txns):
            offsets = [s.offset for s in txn if (s.topic, s.partition) == tp]
            assert offsets == list(range(start, start + len(offsets))), (
                f"{tp}: transaction {n} written at {offsets}, expected from {start} (one marker after each transaction)"
            )
            start += len(offsets) + 1
    hw = settled_end_offsets(bootstrap, partitions)
    expected_hw = {tp: sum(1 for t in txns for s in t if (s.topic, s.partition) == tp) + 3 for tp in partitions}
    assert hw == expected_hw, "high watermark: records plus three markers"

    committed = read_all(bootstrap, "read_committed", hw)
    assert by_partition(committed) == by_partition(txns[0] + txns[2]), (
        f"read_committed must deliver the two committed transactions only; got {summary(committed)}"
    )
    everything = read_all(bootstrap, "read_uncommitted", hw)
    assert by_partition(everything) == by_partition(txns[0] + txns[1] + txns[2]), (
        f"read_uncommitted delivers aborted records too (never the markers); got {summary(everything)}"
    )


@pytest.mark.parametrize("outcome", ["commit", "abort"])
def test_read_committed_stops_at_an_open_transaction_until_it_ends(txn_broker, outcome):
    bootstrap = txn_broker.bootstrap
    topic = unique("lso")
    create_topic(bootstrap, topic, 1)
    tp = (topic, 0)
    producer = transactional_producer(bootstrap, unique("lso"))
    before = run_transaction(producer, layout("before", 3, [(topic, 1)]), "commit")  # offsets 0-2, marker 3
    pending = run_transaction(producer, layout("pending", 3, [(topic, 1)]), "open")  # 4-6
    after = plain_produce(bootstrap, layout("plain", 2, [(topic, 1)]))  # 7-8, behind the open transaction
    assert [s.offset for s in before + pending + after] == [0, 1, 2, 4, 5, 6, 7, 8]

    first_open = pending[0].offset
    assert end_offsets(bootstrap, "read_committed", [tp]) == {tp: first_open}, "LSO: first offset of the open transaction"
    assert end_offsets(bootstrap, "read_uncommitted", [tp]) == {tp: 9}
    waiting = reader(bootstrap, "read_committed", [tp])
    try:
        seen, reached = read_until_end(waiting, {tp: first_open})
        assert reached == {tp: first_open}, "read_committed must stop at the last stable offset"
        assert seen == before, f"read_committed delivered past the open transaction: {summary(seen)}"
        everything = read_all(bootstrap, "read_uncommitted", {tp: 9})
        assert everything == before + pending + after

        if outcome == "commit":
            producer.commit_transaction(TXN_CALL_TIMEOUT)
        else:
            producer.abort_transaction(TXN_CALL_TIMEOUT)
        # The marker lands at offset 9; the waiting consumer moves on to the end.
        seen, reached = read_until_end(waiting, {tp: 10})
        released = (pending if outcome == "commit" else []) + after
        assert seen == released, f"after the {outcome}, read_committed delivered {summary(seen)}"
        assert reached == {tp: 10}
    finally:
        waiting.close()
    assert end_offsets(bootstrap, "read_committed", [tp]) == {tp: 10}


# ---------------------------------------------------------------------------------------------
# Consume-transform-produce (librdkafka)


def test_send_offsets_to_transaction_commits_the_group_offsets_with_the_output(txn_broker):
    bootstrap = txn_broker.bootstrap
    src, dst, group = unique("src"), unique("dst"), unique("ctp")
    create_topic(bootstrap, src, 2)
    create_topic(bootstrap, dst, 1)
    inputs = plain_produce(bootstrap, [(src, i % 2, f"in-{i}".encode()) for i in range(40)])
    src_parts = [(src, 0), (src, 1)]
    producer = transactional_producer(bootstrap, unique("ctp"))
    consumer = Consumer({
        "bootstrap.servers": bootstrap, "group.id": group, "isolation.level": "read_committed",
        "enable.auto.commit": False, "auto.offset.reset": "earliest",
        "session.timeout.ms": 6000, "heartbeat.interval.ms": 300,
    })
    consumer.subscribe([src])

    def poll_records(n):
        got = []
        deadline = time.time() + READ_TIMEOUT
        while len(got) < n and time.time() < deadline:
            msg = consumer.poll(0.2)
            if msg is not None and msg.error() is None:
                got.append(msg)
        assert len(got) == n, f"consumed {len(got)} of {n} input records"
        return got

    def transform(batch, end):
        producer.begin_transaction()
        for m in batch:
            producer.produce(dst, value=b"T:" + m.value(), partition=0)
        positions = [tp for tp in consumer.position(consumer.assignment()) if tp.offset >= 0]
        producer.send_offsets_to_transaction(positions, consumer.consumer_group_metadata(), TXN_CALL_TIMEOUT)
        assert producer.flush(TXN_CALL_TIMEOUT) == 0
        pending = group_offsets(bootstrap, group, src_parts)
        if end == "commit":
            producer.commit_transaction(TXN_CALL_TIMEOUT)
        else:
            producer.abort_transaction(TXN_CALL_TIMEOUT)
        return {tp: -1001 for tp in src_parts} | {(tp.topic, tp.partition): tp.offset for tp in positions}, pending

    try:
        first = poll_records(25)
        sent_offsets, while_open = transform(first, "commit")
        assert sum(max(o, 0) for o in sent_offsets.values()) == 25
        assert while_open == {tp: -1001 for tp in src_parts}, "offsets of an open transaction must not be visible"
        wait_for(lambda: group_offsets(bootstrap, group, src_parts), sent_offsets, what="group offsets after commit")
        out = read_all(bootstrap, "read_committed", {(dst, 0): 26})
        assert [r.value for r in out] == [b"T:" + m.value() for m in first]

        second = poll_records(15)
        _, while_open = transform(second, "abort")
        assert while_open == sent_offsets
        # Once the abort marker is in the output, the aborted offsets must be gone for good.
        out = read_all(bootstrap, "read_committed", {(dst, 0): 42})  # 25, marker, 15, marker
        assert [r.value for r in out] == [b"T:" + m.value() for m in first], "aborted output visible"
        assert group_offsets(bootstrap, group, src_parts) == sent_offsets, "aborted offsets were committed"
    finally:
        consumer.close()

    # A new member of the group resumes from the committed offsets: exactly the second half.
    resumed = Consumer({
        "bootstrap.servers": bootstrap, "group.id": group, "isolation.level": "read_committed",
        "enable.auto.commit": False, "auto.offset.reset": "earliest", "enable.partition.eof": True,
    })
    resumed.subscribe([src])
    try:
        seen, _ = read_until_end(resumed, {(src, 0): 20, (src, 1): 20})
    finally:
        resumed.close()
    expected = [s for s in inputs if s.offset >= max(sent_offsets[(s.topic, s.partition)], 0)]
    assert seen == expected, f"the group should resume after the committed offsets {sent_offsets}: {summary(seen)}"


# ---------------------------------------------------------------------------------------------
# Fencing and timeouts (librdkafka)


def test_new_producer_with_the_same_transactional_id_fences_the_old_one(txn_broker):
    bootstrap = txn_broker.bootstrap
    topic, txn_id = unique("fence"), unique("fence")
    create_topic(bootstrap, topic, 2)
    parts = [(topic, 0), (topic, 1)]
    zombie = transactional_producer(bootstrap, txn_id)
    zombie_records = run_transaction(zombie, layout("zombie", 6, [(topic, 2)]), "open")

    # initTransactions of the new instance aborts the zombie's open transaction.
    successor = transactional_producer(bootstrap, txn_id)
    with pytest.raises(KafkaException) as fenced:
        zombie.commit_transaction(TXN_CALL_TIMEOUT)
    err = fenced.value.args[0]
    assert err.code() in (KafkaError._FENCED, KafkaError.PRODUCER_FENCED) and err.fatal(), (
        f"the zombie's commit should fail as fenced (fatal), not with {err}"
    )
    with pytest.raises(KafkaException):
        zombie.begin_transaction()  # a fenced producer can do nothing more

    good = run_transaction(successor, layout("good", 4, [(topic, 2)]), "commit")
    hw = settled_end_offsets(bootstrap, parts)
    assert hw == {(topic, 0): 3 + 1 + 2 + 1, (topic, 1): 3 + 1 + 2 + 1}, "zombie records, abort marker, new records, commit marker"
    committed = read_all(bootstrap, "read_committed", hw)
    assert committed == good, f"read_committed must not see the fenced producer's records: {summary(committed)}"
    assert read_all(bootstrap, "read_uncommitted", hw) == sorted(zombie_records + good)


def test_transaction_open_past_its_timeout_is_aborted_by_the_broker(txn_broker):
    bootstrap = txn_broker.bootstrap
    topic = unique("slow")
    create_topic(bootstrap, topic, 1)
    tp = (topic, 0)
    producer = transactional_producer(bootstrap, unique("slow"), **{"transaction.timeout.ms": 2000})
    started = time.time()
    stale = run_transaction(producer, layout("stale", 3, [(topic, 1)]), "open")
    later = plain_produce(bootstrap, [(topic, 0, b"later")])
    assert [s.offset for s in stale + later] == [0, 1, 2, 3]

    # read_committed waits at offset 0 until the broker aborts the transaction, then moves
    # past it (abort marker at 4) without ever delivering its records.
    waiting = reader(bootstrap, "read_committed", [tp])
    try:
        seen, reached = read_until_end(waiting, {tp: 5}, timeout=30)
        waited = time.time() - started
    finally:
        waiting.close()
    assert seen == later, f"records of the timed-out transaction were delivered: {summary(seen)}"
    assert waited >= 1.9, f"the broker aborted the transaction after {waited:.1f} s, before its 2 s timeout"
    assert end_offsets(bootstrap, "read_uncommitted", [tp]) == {tp: 5}
    with pytest.raises(KafkaException) as failed:
        producer.commit_transaction(TXN_CALL_TIMEOUT)
    print(f"commit after the timeout failed with {failed.value.args[0]}")
    assert read_all(bootstrap, "read_committed", {tp: 5}) == later


def test_transaction_timeout_above_the_broker_maximum_is_refused(broker_factory):
    broker = broker_factory(TXN_BROKER_ARGS + ["-o", "transaction.max.timeout.ms=5000"])
    producer = Producer({
        "bootstrap.servers": broker.bootstrap, "transactional.id": unique("long"), "transaction.timeout.ms": 10000,
    })
    with pytest.raises(KafkaException) as refused:
        producer.init_transactions(TXN_CALL_TIMEOUT)
    assert refused.value.args[0].code() == KafkaError.INVALID_TRANSACTION_TIMEOUT, refused.value.args[0]
    transactional_producer(broker.bootstrap, unique("max"), **{"transaction.timeout.ms": 5000})


# ---------------------------------------------------------------------------------------------
# Restarts (librdkafka)


@pytest.mark.parametrize("how", ["stop", "kill"])
def test_transactions_survive_a_broker_restart(txn_broker, how):
    broker = txn_broker
    topic = unique("durable")
    create_topic(broker.bootstrap, topic, 2)
    parts = [(topic, 0), (topic, 1)]
    topics = [(topic, 2)]
    txn_id = unique("durable")
    producer = transactional_producer(broker.bootstrap, txn_id)
    committed = run_transaction(producer, layout("a", 10, topics), "commit")
    aborted = run_transaction(producer, layout("b", 6, topics), "abort")
    # Another producer's transaction is still open at the crash; with a 5 s timeout the restarted
    # broker must abort it (its coordinator state comes back from the log).
    dangling_producer = transactional_producer(broker.bootstrap, unique("dangling"), **{"transaction.timeout.ms": 5000})
    dangling = run_transaction(dangling_producer, layout("d", 4, topics), "open")
    # Crash the moment EndTxn is answered: the commit may still be between "prepare commit" in
    # the transaction log and its markers in the partitions; the restarted broker finishes it.
    last = run_transaction(producer, layout("c", 8, topics), "commit")
    if how == "stop":
        assert broker.stop() == 0
    else:
        broker.kill()
    broker.start()

    after = plain_produce(broker.bootstrap, [(topic, p, f"after-{p}".encode()) for p in range(2)])
    hw = end_offsets(broker.bootstrap, "read_uncommitted", parts)
    # read_committed gets past the dangling transaction once the broker has aborted it.
    seen = read_all(broker.bootstrap, "read_committed", hw, timeout=30)
    assert by_partition(seen) == by_partition(committed + last + after), (
        f"after the restart read_committed should see the committed transactions (same offsets) and "
        f"the new records only: {summary(seen)}"
    )
    everything = read_all(broker.bootstrap, "read_uncommitted", hw)
    assert by_partition(everything) == by_partition(committed + aborted + dangling + last + after)

    # The same transactional id goes on after the restart.
    producer = transactional_producer(broker.bootstrap, txn_id)
    more = run_transaction(producer, layout("e", 4, topics), "commit")
    hw = end_offsets(broker.bootstrap, "read_uncommitted", parts)
    seen = read_all(broker.bootstrap, "read_committed", hw)
    assert by_partition(seen) == by_partition(committed + last + after + more)


# ---------------------------------------------------------------------------------------------
# Three brokers (librdkafka)


def test_transactions_span_brokers_whatever_broker_coordinates_them(broker_factory):
    brokers = start_cluster(broker_factory)
    ports = {i + 1: b.port for i, b in enumerate(brokers)}
    error, _, _, _, message = find_coordinator(brokers[0].bootstrap, "probe", timeout=30)
    assert error == 0, f"FindCoordinator(txn) on a cluster: error {error} {message!r}"
    leaders = transaction_state_leaders(brokers[0].bootstrap)
    assert sorted(leaders) == list(range(50))
    assert set(leaders.values()) == {1, 2, 3}, f"__transaction_state partitions should be spread: {leaders}"

    # Every broker names the leader of the id's __transaction_state partition.
    ids = [f"app-{i}" for i in range(12)]
    for b in brokers:
        for txn_id in ids:
            owner = leaders[txn_state_partition(txn_id, 50)]
            error, node_id, _, port, message = find_coordinator(b.bootstrap, txn_id)
            assert (error, node_id, port) == (0, owner, ports[owner]), (
                f"broker {b.port} on {txn_id!r}: expected node {owner}, got {(error, node_id, port, message)}"
            )

    topic = unique("spread")
    create_topic(brokers[1].bootstrap, topic, 6)
    md = AdminClient({"bootstrap.servers": brokers[0].bootstrap}).list_topics(topic=topic, timeout=10)
    partition_leaders = {p.id: p.leader for p in md.topics[topic].partitions.values()}
    assert len(set(partition_leaders.values())) == 3, f"partitions should be spread: {partition_leaders}"
    parts = [(topic, p) for p in range(6)]
    # One transactional id coordinated by each broker, each writing to partitions on all three.
    chosen = {}
    for i in range(1000):
        chosen.setdefault(leaders[txn_state_partition(f"spread-{i}", 50)], f"spread-{i}")
    expected = []
    for node, txn_id in sorted(chosen.items()):
        producer = transactional_producer(brokers[node % 3].bootstrap, txn_id)
        expected += run_transaction(producer, layout(f"ok{node}", 12, [(topic, 6)]), "commit")
        run_transaction(producer, layout(f"no{node}", 6, [(topic, 6)]), "abort")
    hw = end_offsets(brokers[2].bootstrap, "read_uncommitted", parts)
    seen = read_all(brokers[2].bootstrap, "read_committed", hw)
    assert by_partition(seen) == by_partition(expected), f"read_committed across the cluster: {summary(seen)}"


# ---------------------------------------------------------------------------------------------
# Java client


def java_lines(out):
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def test_java_transactions_commit_abort_fence_and_send_offsets(txn_broker):
    prefix = unique("j")
    out = run_java("TransactionalProduceConsume.java", txn_broker.bootstrap, prefix, timeout=240)
    lines = java_lines(out)
    a, b = f"{prefix}-a", f"{prefix}-b"
    topics = [(a, 3), (b, 2)]
    txns = [layout("c1", 20, topics), layout("ab", 10, topics), layout("c3", 10, topics)]
    # Offsets follow from the layout: each transaction's records, then its marker.
    offsets, next_offset = [], {}
    for txn in txns:
        placed = []
        for t, p, v in txn:
            placed.append(Sent(t, p, next_offset.get((t, p), 0), v))
            next_offset[(t, p)] = next_offset.get((t, p), 0) + 1
        for tp in {(t, p) for t, p, _ in txn}:
            next_offset[tp] += 1  # the marker
        offsets.append(placed)

    def expect(records, keys):
        got = by_partition(records)
        return {f"{t}-{p}": ",".join(f"{o}:{v.decode()}" for o, v in got.get((t, p), [])) for t, p in keys}

    def section(key):
        return {k[len(key) + 1:]: v for k, v in lines.items() if k.startswith(key + ".")}

    keys = [(a, 0), (a, 1), (a, 2), (b, 0), (b, 1)]
    assert section("hw") == {f"{t}-{p}": str(next_offset[(t, p)]) for t, p in keys}
    assert section("uncommitted") == expect(offsets[0] + offsets[1] + offsets[2], keys)
    assert section("committed") == expect(offsets[0] + offsets[2], keys), "read_committed must skip the aborted transaction"

    a0 = next_offset[(a, 0)]
    committed_a0 = expect(offsets[0] + offsets[2], [(a, 0)])
    assert lines["open_offsets"] == f"{a0},{a0 + 1},{a0 + 2}"
    assert lines["open_end_read_committed"] == str(a0), "endOffsets under read_committed is the LSO"
    assert lines["open_end_read_uncommitted"] == str(a0 + 3)
    assert section("open_read_committed") == committed_a0
    assert lines["fenced_commit"] == "ProducerFencedException"
    assert lines["open_listed"] == "Ongoing"
    assert lines["open_described"] == f"Ongoing;[{a}-0];timeout=60000"
    assert lines["fenced_end"] == str(a0 + 4), "the fenced transaction ends with an abort marker"
    assert section("fenced_read_committed") == committed_a0
    after = committed_a0[f"{a}-0"] + f",{a0 + 4}:c5-0,{a0 + 5}:c5-1"
    assert section("after_fence_read_committed") == {f"{a}-0": after}

    assert lines["group_offsets_while_open"] == "{}", "offsets of an open transaction must not be visible"
    assert lines["group_offsets_committed"] == "{0=5, 1=5}"
    assert lines["out_end"] == "18", "10 committed records, marker, 6 aborted records, marker"
    out_records = section("out_read_committed")[f"{prefix}-out-0"].split(",")
    assert [r.split(":")[0] for r in out_records] == [str(i) for i in range(10)]
    assert sorted(r.split(":")[1] for r in out_records) == sorted(f"T-in-{i}" for i in range(10))
    assert lines["group_offsets_after_abort"] == "{0=5, 1=5}", "aborted offsets were committed"
    assert sorted(lines["resumed"].split(",")) == sorted(f"in-{i}" for i in range(10, 16))


class Processor:
    """ExactlyOnceCopy.java as a child process whose progress lines are collected as they come."""

    def __init__(self, *args):
        classpath = os.pathsep.join(str(p) for p in sorted(Path(JARS).glob("*.jar")))
        self.proc = subprocess.Popen(
            ["java", "-cp", classpath, str(JAVA_DIR / "ExactlyOnceCopy.java"), *map(str, args)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self.lines, self.err = [], []
        threading.Thread(target=self._read, args=(self.proc.stdout, self.lines), daemon=True).start()
        threading.Thread(target=self._read, args=(self.proc.stderr, self.err), daemon=True).start()

    @staticmethod
    def _read(stream, into):
        for line in stream:
            into.append(line.rstrip("\n"))

    @property
    def position(self):
        found = [int(line.split("=", 1)[1]) for line in list(self.lines) if line.startswith("position=")]
        return max(found, default=0)

    def wait_for(self, predicate, timeout, what):
        deadline = time.time() + timeout
        while not predicate() and time.time() < deadline and self.proc.poll() is None:
            time.sleep(0.05)
        assert predicate(), f"processor: {what} not reached; exit {self.proc.poll()}\n{self.describe()}"

    def describe(self):
        return "stdout tail: %s\nstderr tail: %s" % (self.lines[-15:], "\n".join(self.err[-30:]))

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def test_java_consume_transform_produce_is_exactly_once_across_broker_and_processor_crashes(txn_broker):
    broker = txn_broker
    src, dst, group, txn_id = unique("eos-in"), unique("eos-out"), unique("eos"), unique("eos")
    create_topic(broker.bootstrap, src, 3)
    create_topic(broker.bootstrap, dst, 3)
    count = 3000
    inputs = plain_produce(broker.bootstrap, [(src, i % 3, str(i).encode()) for i in range(count)])
    args = (broker.bootstrap, src, dst, group, txn_id, 150)
    processors = [Processor(*args)]
    try:
        first = processors[0]
        first.wait_for(lambda: first.position >= count // 4, 60, f"position {count // 4}")
        at_broker_crash = first.position
        broker.kill()
        broker.start()
        first.wait_for(lambda: first.position >= at_broker_crash + count // 4, 90, "progress after the broker crash")
        at_processor_crash = first.position
        first.kill()
        second = Processor(*args)
        processors.append(second)
        second.wait_for(lambda: "done" in second.lines, 150, "the end of the input")
        assert second.proc.wait(timeout=30) == 0, second.describe()
    finally:
        for p in processors:
            p.kill()
    assert at_broker_crash < count and at_processor_crash < count, "the processor finished before the crashes"
    restarts = [line for line in processors[0].lines if line.startswith("restart=")]
    print(f"broker killed at {at_broker_crash}, processor at {at_processor_crash}; first processor restarts: {restarts}")

    parts = [(dst, p) for p in range(3)]
    hw = end_offsets(broker.bootstrap, "read_uncommitted", parts)
    out = read_all(broker.bootstrap, "read_committed", hw, timeout=30)
    values = [r.value for r in out]
    expected = [b"copy-" + s.value for s in inputs]
    duplicates = len(values) - len(set(values))
    missing = len(set(expected) - set(values))
    assert (duplicates, missing) == (0, 0), f"{duplicates} duplicated, {missing} missing of {count} copied records"
    for p in range(3):
        got = [r.value for r in out if r.partition == p]
        assert got == [b"copy-" + s.value for s in inputs if s.partition == p], f"output partition {p} out of order"
