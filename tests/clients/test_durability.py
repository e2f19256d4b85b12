"""Everything acknowledged survives a restart: clean (SIGTERM) and crash (SIGKILL) in the middle
of a produce stream with acks=all. Topics and their configs survive too."""

import threading
import time

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, ConfigResource

from test_produce_fetch import consume_to_end, create_topic


@pytest.mark.parametrize("how", ["sigterm", "sigkill"])
def test_acknowledged_records_survive_restart(broker, how):
    topic = f"durable-{how}"
    create_topic(broker.bootstrap, topic, partitions=2)
    acked = {}
    lock = threading.Lock()
    stop = threading.Event()

    def on_delivery(err, msg):
        if err is None:
            with lock:
                acked[msg.value()] = (msg.partition(), msg.offset())

    def produce_stream():
        producer = Producer(
            {
                "bootstrap.servers": broker.bootstrap,
                "acks": "all",
                "linger.ms": 2,
                "message.timeout.ms": 3000,
                "retries": 0,
            }
        )
        i = 0
        while not stop.is_set():
            try:
                producer.produce(topic, value=f"r{i:07d}".encode(), partition=i % 2, on_delivery=on_delivery)
            except BufferError:
                producer.poll(0.05)
                continue
            producer.poll(0)
            i += 1
            if i % 500 == 0:
                time.sleep(0.001)
        producer.flush(5)

    thread = threading.Thread(target=produce_stream)
    thread.start()
    deadline = time.time() + 20
    while len(acked) < 3000 and time.time() < deadline:
        time.sleep(0.05)
    assert len(acked) >= 3000, "producer made no progress"
    if how == "sigkill":
        broker.kill()
    else:
        assert broker.stop() == 0
    stop.set()
    thread.join()
    broker.start()

    with lock:
        expected = dict(acked)
    # Records written but not yet acknowledged at the crash may be there too: read to the end.
    got = consume_to_end(broker.bootstrap, topic, 2)
    seen = {}
    for m in got:
        assert m.value() not in seen, f"{m.value()} read twice"
        seen[m.value()] = (m.partition(), m.offset())
    missing = [v for v in expected if v not in seen]
    assert not missing, f"{len(missing)} acknowledged records lost, e.g. {missing[:5]}"
    for value, where in expected.items():
        assert seen[value] == where, f"{value} moved from {where} to {seen[value]}"
    for p in (0, 1):
        offsets = sorted(o for (pp, o) in seen.values() if pp == p)
        assert offsets == list(range(len(offsets))), "offsets are not contiguous"


def test_topics_and_configs_survive_restart(broker):
    create_topic(broker.bootstrap, "kept", partitions=5, config={"retention.ms": "123456"})
    broker.restart()
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    md = admin.list_topics(timeout=10)
    assert len(md.topics["kept"].partitions) == 5
    res = ConfigResource(ConfigResource.Type.TOPIC, "kept")
    configs = admin.describe_configs([res])[res].result(timeout=10)
    assert configs["retention.ms"].value == "123456"
