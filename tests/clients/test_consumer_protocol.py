"""Consumer groups with the KIP-848 protocol (`group.protocol=consumer`): Java 3.9 consumers and
librdkafka consumers split partitions with server-side assignors, rebalance incrementally when a
member leaves or dies, resume after their last commit, and show up in the admin APIs."""

import os
import subprocess
import threading
import time
import uuid

import pytest
from confluent_kafka import (
    Consumer,
    ConsumerGroupType,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import JARS, JAVA_DIR, run_java

SESSION_MS = 4000
# Short session and heartbeat interval so a dead member is noticed within seconds.
BROKER_ARGS = [
    "-o", f"group.consumer.session.timeout.ms={SESSION_MS}",
    "-o", "group.consumer.heartbeat.interval.ms=300",
]


def create_topic(bootstrap, name, partitions):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])[name].result(timeout=15)


def produce(bootstrap, topic, partitions, count, tag):
    """`count` records per partition, valued `tag-partition-i`; returns the values by partition."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    values = {}
    for p in range(partitions):
        for i in range(count):
            value = f"{tag}-{p}-{i}"
            producer.produce(topic, value=value.encode(), partition=p)
            values.setdefault(p, []).append(value)
    assert producer.flush(30) == 0
    return values


def wait_until(predicate, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class JavaMember:
    """A `ConsumerProtocolMember.java` process: a Java consumer with group.protocol=consumer,
    reporting its assignment and records on stdout, taking commands on stdin."""

    def __init__(self, bootstrap, group, topic, name, assignor=None):
        classpath = os.pathsep.join(str(p) for p in sorted(JARS.glob("*.jar")))
        self.name = name
        self.proc = subprocess.Popen(
            ["java", "-cp", classpath, str(JAVA_DIR / "ConsumerProtocolMember.java"),
             bootstrap, group, topic, name, *([assignor] if assignor else [])],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self.events = []
        self.stderr = []
        self._lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=lambda: self.stderr.extend(self.proc.stderr), daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            with self._lock:
                self.events.append(line.split())

    def lines(self, kind, since=0):
        with self._lock:
            return [e[1:] for e in self.events[since:] if e and e[0] == kind]

    def mark(self):
        with self._lock:
            return len(self.events)

    def owned(self):
        owned = self.lines("owned")
        if not owned or owned[-1][0] == "epoch":
            return set()
        return {int(p) for p in owned[-1][0].split(",")}

    def values(self, since=0):
        return [r[2] for r in self.lines("record", since)]

    def records(self, since=0):
        return [(int(r[0]), int(r[1]), r[2]) for r in self.lines("record", since)]

    def revoked(self, since=0):
        return {int(p) for r in self.lines("revoked", since) for p in r[0].split(",")}

    def send(self, command):
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()

    def commit(self):
        before = len(self.lines("committed"))
        self.send("commit")
        wait_until(lambda: len(self.lines("committed")) > before, 30, f"{self.name} to commit")
        committed = self.lines("committed")[-1]
        return dict(tuple(map(int, kv.split("="))) for kv in committed[0].split(",")) if committed else {}

    def close(self):
        self.send("close")
        wait_until(lambda: self.lines("closed") or self.proc.poll() is not None, 30, f"{self.name} to close")
        assert self.proc.wait(timeout=30) == 0, self.log()

    def kill(self):
        self.proc.kill()
        self.proc.wait()

    def log(self):
        return f"{self.name} stderr:\n" + "".join(self.stderr[-40:])


def split(members, partitions, each=None):
    """True when the members own disjoint sets covering every partition (of `each` apiece)."""
    sets = [m.owned() for m in members]
    union = set().union(*sets)
    return (
        sum(len(s) for s in sets) == len(union) == partitions
        and union == set(range(partitions))
        and (each is None or all(len(s) == each for s in sets))
    )


def test_java_members_split_rebalance_incrementally_and_survive_a_dead_member(broker_factory):
    broker = broker_factory(BROKER_ARGS)
    topic, group = f"t-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:8]}"
    create_topic(broker.bootstrap, topic, 12)
    first = produce(broker.bootstrap, topic, 12, 10, "first")
    members = [JavaMember(broker.bootstrap, group, topic, name) for name in ("a", "b", "c")]
    a, b, c = members
    try:
        wait_until(lambda: split(members, 12, each=4), 90, "three members with 4 partitions each")
        everything = {v for vs in first.values() for v in vs}
        wait_until(lambda: set().union(*(m.values() for m in members)) >= everything, 30, "every record")

        # Stable: new records reach exactly the owner of their partition (a member may still be
        # reading older records of a partition it got after the first owner read them).
        second = produce(broker.bootstrap, topic, 12, 5, "second")

        def new_values(m):
            return {v for v in m.values() if v.startswith("second-")}

        for m in members:
            mine = {v for p in m.owned() for v in second[p]}
            wait_until(lambda: new_values(m) >= mine, 30, f"{m.name}'s records")
        for m in members:
            assert new_values(m) == {v for p in m.owned() for v in second[p]}, "another member's record"

        # c leaves (close sends a leave heartbeat): a and b keep theirs and split c's.
        a_before, b_before = a.owned(), b.owned()
        marks = [a.mark(), b.mark()]
        c.close()
        wait_until(lambda: split([a, b], 12, each=6), 30, "a and b with 6 partitions each")
        assert a_before <= a.owned() and b_before <= b.owned()
        assert not a.revoked(marks[0]) and not b.revoked(marks[1]), "incremental: nothing revoked"
        assert broker.wait_for_log(lambda r: r.get("msg") == "member left" and r.get("group") == group)

        # b dies without leaving: its partitions move to a after the session timeout.
        a_before, mark = a.owned(), a.mark()
        b.kill()
        killed = time.time()
        wait_until(lambda: a.owned() == set(range(12)), 30, "a to own everything")
        took = time.time() - killed
        assert SESSION_MS / 1000 - 1 < took < SESSION_MS / 1000 + 10, took
        assert a_before <= a.owned() and not a.revoked(mark)
        assert broker.wait_for_log(lambda r: r.get("msg") == "member session expired" and r.get("group") == group)
        third = produce(broker.bootstrap, topic, 12, 2, "third")
        wanted = {v for vs in third.values() for v in vs}
        wait_until(lambda: set(a.values(mark)) >= wanted, 30, "a to read every new record")
        a.close()
    finally:
        for m in members:
            m.kill()


def test_java_member_restarted_after_a_commit_resumes_right_after_it(broker_factory):
    broker = broker_factory(BROKER_ARGS)
    topic, group = f"t-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:8]}"
    create_topic(broker.bootstrap, topic, 3)
    produce(broker.bootstrap, topic, 3, 20, "committed")
    first = JavaMember(broker.bootstrap, group, topic, "first")
    second = None
    try:
        wait_until(lambda: len(first.records()) == 60, 90, "the first 60 records")
        assert first.commit() == {0: 20, 1: 20, 2: 20}
        mark = first.mark()
        tail = produce(broker.bootstrap, topic, 3, 10, "tail")
        wait_until(lambda: len(first.records(mark)) == 30, 30, "the uncommitted tail")
        first.close()

        second = JavaMember(broker.bootstrap, group, topic, "second")
        wait_until(lambda: len(second.records()) >= 30, 90, "the restarted member's records")
        records = second.records()
        firsts = {}
        for p, offset, _ in records:
            firsts.setdefault(p, offset)
        # Right after the commit: the tail again, nothing from before it.
        assert firsts == {0: 20, 1: 20, 2: 20}
        assert sorted(v for _, _, v in records) == sorted(v for vs in tail.values() for v in vs)
        second.close()
    finally:
        first.kill()
        if second:
            second.kill()


def test_java_member_rejoins_after_a_coordinator_restart(broker_factory):
    """Membership is not persisted: after a restart the coordinator answers the member's next
    heartbeat with UNKNOWN_MEMBER_ID, the client rejoins, and resumes from its committed offsets."""
    broker = broker_factory(BROKER_ARGS)
    topic, group = f"t-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:8]}"
    create_topic(broker.bootstrap, topic, 3)
    produce(broker.bootstrap, topic, 3, 10, "before")
    member = JavaMember(broker.bootstrap, group, topic, "m")
    try:
        wait_until(lambda: len(member.records()) == 30, 90, "the first 30 records")
        assert member.commit() == {0: 10, 1: 10, 2: 10}
        broker.restart()
        mark = member.mark()
        after = produce(broker.bootstrap, topic, 3, 5, "after")
        wanted = sorted(v for vs in after.values() for v in vs)
        wait_until(lambda: len(member.records(mark)) >= 15, 90, "records after the restart")
        # Rejoined with all partitions, from the committed offsets: nothing committed is read
        # again. Records read between the restart and the rejoin may come twice: the fenced
        # member loses its partitions without committing, as Kafka's clients do.
        assert member.owned() == {0, 1, 2}
        again = [v for _, _, v in member.records(mark)]
        assert set(again) == set(wanted), f"after the restart: {sorted(again)}"
        assert not [v for v in again if v.startswith("before")]
        assert broker.wait_for_log(lambda r: r.get("msg") == "member joined" and r.get("group") == group)
        member.close()
    finally:
        member.kill()


def test_java_range_assignor_and_admin_views(broker_factory):
    broker = broker_factory(BROKER_ARGS)
    topic, group = f"t-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:8]}"
    create_topic(broker.bootstrap, topic, 6)
    members = [JavaMember(broker.bootstrap, group, topic, n, assignor="range") for n in ("m1", "m2")]
    try:
        wait_until(lambda: split(members, 6, each=3), 90, "two members with 3 partitions each")
        # Range gives contiguous ranges.
        assert sorted(sorted(m.owned()) for m in members) == [[0, 1, 2], [3, 4, 5]]

        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        listed = admin.list_consumer_groups(types={ConsumerGroupType.CONSUMER}).result(timeout=15)
        assert [g.group_id for g in listed.valid] == [group]
        assert admin.list_consumer_groups(types={ConsumerGroupType.CLASSIC}).result(timeout=15).valid == []
        described = admin.describe_consumer_groups([group])[group].result(timeout=15)
        assert described.type == ConsumerGroupType.CONSUMER
        assert described.partition_assignor == "range"
        assert str(described.state).endswith("STABLE"), described.state
        got = sorted(sorted(tp.partition for tp in m.assignment.topic_partitions) for m in described.members)
        assert got == [[0, 1, 2], [3, 4, 5]]
        assert sorted(m.client_id for m in described.members) == ["m1", "m2"]

        # The Java AdminClient (describeConsumerGroups uses ConsumerGroupDescribe).
        out = run_java("ConsumerGroupAdmin.java", broker.bootstrap, group, topic)
        lines = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
        assert lines["type"] == "Consumer"
        assert lines["state"] == "Stable"
        assert lines["assignor"] == "range"
        assert lines["assignments"] == "0,1,2|3,4,5"
        assert lines["targets"] == "0,1,2|3,4,5"
        assert lines["hosts"] == "/127.0.0.1"
        assert lines["listed"] == "Consumer:Stable"
        # Refused while the group has members, as Kafka does.
        assert lines["alter_offsets"] == "UnknownMemberIdException"
        assert lines["delete"] == "GroupNotEmptyException"
        for m in members:
            m.close()
    finally:
        for m in members:
            m.kill()


def rdkafka_consumer(bootstrap, group, **extra):
    return Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "group.protocol": "consumer",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        **extra,
    })


def assignment_of(c):
    return {(tp.topic, tp.partition) for tp in c.assignment()}


def poll_until(consumers, predicate, timeout, what, values=None):
    """Polls every consumer in turn until `predicate()` holds, adding record values to `values`."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        for c in consumers:
            msg = c.poll(0.05)
            if msg is not None and msg.error() is None and values is not None:
                values.add(msg.value().decode())
        if predicate():
            return
    raise AssertionError(f"timed out waiting for {what}: {[sorted(assignment_of(c)) for c in consumers]}")


def test_librdkafka_members_split_and_take_over_incrementally(broker_factory):
    broker = broker_factory(BROKER_ARGS)
    topic, group = f"t-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:8]}"
    create_topic(broker.bootstrap, topic, 12)
    values = produce(broker.bootstrap, topic, 12, 5, "v")
    everything = {v for vs in values.values() for v in vs}
    consumers = [rdkafka_consumer(broker.bootstrap, group) for _ in range(3)]
    for c in consumers:
        c.subscribe([topic])

    def split_among(cs, each):
        sets = [assignment_of(c) for c in cs]
        union = set().union(*sets)
        return sum(map(len, sets)) == len(union) == 12 and all(len(s) == each for s in sets)

    got = set()
    poll_until(consumers, lambda: split_among(consumers, 4), 60, "4 partitions each", got)
    before = [assignment_of(c) for c in consumers[1:]]
    consumers[0].close()
    rest = consumers[1:]
    poll_until(rest, lambda: split_among(rest, 6), 30, "6 partitions each", got)
    for b, c in zip(before, rest):
        assert b <= assignment_of(c), "a survivor lost a partition"
    poll_until(rest, lambda: got >= everything, 30, "every record", got)
    for c in rest:
        c.close()


def test_librdkafka_regex_subscription_follows_new_topics(broker_factory):
    broker = broker_factory(BROKER_ARGS)
    prefix = f"rx{uuid.uuid4().hex[:6]}"
    create_topic(broker.bootstrap, f"{prefix}-a", 2)
    create_topic(broker.bootstrap, f"other{uuid.uuid4().hex[:6]}", 2)
    c = rdkafka_consumer(broker.bootstrap, f"g-{uuid.uuid4().hex[:8]}")
    c.subscribe([f"^{prefix}-.*"])
    poll_until([c], lambda: assignment_of(c) == {(f"{prefix}-a", 0), (f"{prefix}-a", 1)}, 60, "the matching topic")
    create_topic(broker.bootstrap, f"{prefix}-b", 1)
    want = {(f"{prefix}-a", 0), (f"{prefix}-a", 1), (f"{prefix}-b", 0)}
    poll_until([c], lambda: assignment_of(c) == want, 60, "the new matching topic")
    c.close()


def test_commits_check_the_member_epoch(broker_factory):
    """A librdkafka member commits at its epoch; an admin commit into a group with members is
    refused (UNKNOWN_MEMBER_ID), as Kafka does for consumer groups."""
    broker = broker_factory(BROKER_ARGS)
    topic, group = f"t-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:8]}"
    create_topic(broker.bootstrap, topic, 2)
    produce(broker.bootstrap, topic, 2, 3, "v")
    member = rdkafka_consumer(broker.bootstrap, group)
    member.subscribe([topic])
    poll_until([member], lambda: len(assignment_of(member)) == 2, 60, "the assignment")
    member.commit(offsets=[TopicPartition(topic, 0, 2), TopicPartition(topic, 1, 1)], asynchronous=False)
    got = member.committed([TopicPartition(topic, 0), TopicPartition(topic, 1)], timeout=15)
    assert [(tp.partition, tp.offset) for tp in got] == [(0, 2), (1, 1)]

    # A client outside the group (no member id, no epoch) may not commit while it has members.
    outsider = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group})
    with pytest.raises(KafkaException) as refused:
        outsider.commit(offsets=[TopicPartition(topic, 0, 0)], asynchronous=False)
    assert refused.value.args[0].code() == KafkaError.UNKNOWN_MEMBER_ID, refused.value
    outsider.close()
    got = member.committed([TopicPartition(topic, 0)], timeout=15)
    assert got[0].offset == 2
    member.close()


def first_error(consumer, others, timeout):
    """Polls until `consumer` reports an error; returns it."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        msg = consumer.poll(0.1)
        for o in others:
            o.poll(0)
        if msg is not None and msg.error() is not None:
            return msg.error()
    raise AssertionError("no error reported")


def test_a_group_id_keeps_one_protocol_while_it_has_members(broker_factory):
    broker = broker_factory(BROKER_ARGS)
    topic = f"t-{uuid.uuid4().hex[:8]}"
    create_topic(broker.bootstrap, topic, 2)
    classic_config = {"bootstrap.servers": broker.bootstrap, "session.timeout.ms": 6000}

    # A classic member cannot join a consumer group with members...
    group = f"g-{uuid.uuid4().hex[:8]}"
    member = rdkafka_consumer(broker.bootstrap, group)
    member.subscribe([topic])
    poll_until([member], lambda: len(assignment_of(member)) == 2, 60, "the assignment")
    classic = Consumer({**classic_config, "group.id": group})
    classic.subscribe([topic])
    assert first_error(classic, [member], 30).code() == KafkaError.INCONSISTENT_GROUP_PROTOCOL
    classic.close()
    # ...and keeps nothing from trying: the member still owns both partitions.
    assert len(assignment_of(member)) == 2
    member.close()

    # Nor can a consumer-protocol member join a classic group with members: Kafka's answer is
    # GROUP_ID_NOT_FOUND ("not a consumer group"), fatal for the client.
    group = f"g-{uuid.uuid4().hex[:8]}"
    classic = Consumer({**classic_config, "group.id": group})
    classic.subscribe([topic])
    poll_until([classic], lambda: len(assignment_of(classic)) == 2, 60, "the classic assignment")
    member = rdkafka_consumer(broker.bootstrap, group)
    member.subscribe([topic])
    error = first_error(member, [classic], 30)
    assert error.code() == KafkaError._FATAL and "group id does not exist" in error.str(), error
    member.close()
    classic.close()

    # Once empty, the group id takes the other protocol.
    member = rdkafka_consumer(broker.bootstrap, group)
    member.subscribe([topic])
    poll_until([member], lambda: len(assignment_of(member)) == 2, 60, "the converted group's assignment")
    member.close()
