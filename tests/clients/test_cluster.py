"""Three `sluice` processes form one cluster: the metadata Raft group spans them, pchannels are
spread over them, clients produce and consume across all three, and the cluster survives a
kill -9 of its Raft leader (metadata writes go on; the killed broker rejoins and serves its
partitions again)."""

import socket
import time

from confluent_kafka.admin import AdminClient, NewTopic

from test_produce_fetch import consume_to_end, produce_all


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def start_cluster(broker_factory, size=3, attempts=3):
    """Starts `size` brokers as one cluster. The Raft ports are picked free and then released,
    so another listener may take one meanwhile: then the cluster starts again on new ports."""
    for attempt in range(attempts):
        raft = free_ports(size)
        voters = ",".join(f"{i + 1}@127.0.0.1:{p}" for i, p in enumerate(raft))
        brokers = []
        for i in range(size):
            args = ["--node-id", str(i + 1), "--raft-listen", f"127.0.0.1:{raft[i]}", "--voters", voters,
                    "-o", "group.initial.rebalance.delay.ms=0"]
            brokers.append(broker_factory(args, start=False))
        for b in brokers:
            b.launch()
        try:
            for b in brokers:
                b.wait_started()
            return brokers
        except RuntimeError as e:
            for b in brokers:
                b.kill()
            if "Address already in use" not in str(e) or attempt == attempts - 1:
                raise


def metadata(bootstrap, topic=None):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    return admin.list_topics(topic=topic, timeout=10)


def test_three_brokers_share_the_work_and_survive_a_leader_crash(broker_factory):
    brokers = start_cluster(broker_factory)
    by_id = {i + 1: b for i, b in enumerate(brokers)}
    for b in brokers:
        md = metadata(b.bootstrap)
        assert sorted(md.brokers) == [1, 2, 3]
        assert md.controller_id in (1, 2, 3)

    admin = AdminClient({"bootstrap.servers": brokers[1].bootstrap})
    admin.create_topics([NewTopic("spread", num_partitions=12, replication_factor=1)])["spread"].result(15)
    leaders = {p.id: p.leader for p in metadata(brokers[2].bootstrap, "spread").topics["spread"].partitions.values()}
    assert len(set(leaders.values())) == 3, f"partitions should be spread over the 3 brokers: {leaders}"

    messages = [(i % 12, None, str(i).encode(), None) for i in range(3000)]
    produce_all(brokers[0].bootstrap, "spread", messages, acks="all")
    assert sorted(int(m.value()) for m in consume_to_end(brokers[2].bootstrap, "spread", 12)) == list(range(3000))

    # kill -9 the Raft leader; a new one is elected and metadata writes continue.
    controller = metadata(brokers[0].bootstrap).controller_id
    by_id[controller].kill()
    survivors = [b for i, b in by_id.items() if i != controller]
    killed_at = time.time()
    new_controller = None
    while time.time() - killed_at < 15:
        md = metadata(survivors[0].bootstrap)
        if md.controller_id not in (-1, controller):
            new_controller = md.controller_id
            break
        time.sleep(0.1)
    failover = time.time() - killed_at
    assert new_controller is not None, "no new Raft leader after the old one was killed"
    assert failover < 10, f"failover took {failover:.1f} s"
    print(f"leaders before the crash: {leaders}; Raft leader {controller} killed; new leader {new_controller} after {failover:.2f} s")
    admin = AdminClient({"bootstrap.servers": survivors[1].bootstrap})
    admin.create_topics([NewTopic("after-crash", num_partitions=2, replication_factor=1)])["after-crash"].result(15)
    assert "after-crash" in metadata(survivors[0].bootstrap).topics

    # The killed broker rejoins, catches up, and serves its partitions again: nothing lost.
    by_id[controller].start()
    md = metadata(by_id[controller].bootstrap)
    assert "after-crash" in md.topics
    deadline = time.time() + 30
    while time.time() < deadline:
        parts = metadata(survivors[0].bootstrap, "spread").topics["spread"].partitions.values()
        if all(p.leader in (1, 2, 3) and p.error is None for p in parts):
            break
        time.sleep(0.2)
    assert sorted(int(m.value()) for m in consume_to_end(survivors[0].bootstrap, "spread", 12)) == list(range(3000))
