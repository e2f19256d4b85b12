"""Idempotent producers: retried batches are written once. A TCP proxy between the clients and
the broker cuts every connection at intervals, so batches whose responses are lost get retried;
the log must hold every record exactly once, in order."""

import socket
import threading
import time

import pytest
from confluent_kafka import Producer

from conftest import run_java
from test_produce_fetch import consume_to_end, create_topic


class CuttingProxy:
    """Forwards 127.0.0.1:port to the broker and resets every open connection every `period`."""

    def __init__(self, period):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.period = period
        self.target = None
        self.conns = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.cutting = threading.Event()
        self.cutting.set()
        self.cuts = 0

    def start(self, target_port):
        self.target = target_port
        threading.Thread(target=self._accept, daemon=True).start()
        threading.Thread(target=self._cutter, daemon=True).start()

    def _accept(self):
        self.listener.settimeout(0.2)
        while not self.stop.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                client.close()
                continue
            with self.lock:
                self.conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _cutter(self):
        while not self.stop.wait(self.period):
            if not self.cutting.is_set():
                continue
            with self.lock:
                conns, self.conns = self.conns, []
            if conns:
                self.cuts += 1
            for s in conns:
                # shutdown() wakes the pipe thread blocked in recv() (close() alone would not,
                # and the peer would see nothing); linger 0 turns the close into a reset.
                try:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

    def close(self):
        self.stop.set()
        self.listener.close()


@pytest.fixture
def proxied_broker(broker_factory):
    proxy = CuttingProxy(period=1.0)
    broker = broker_factory(["--advertise", f"127.0.0.1:{proxy.port}"])
    proxy.start(broker.port)
    yield broker, proxy
    proxy.close()


def test_librdkafka_idempotent_producer_survives_connection_cuts(proxied_broker):
    broker, proxy = proxied_broker
    create_topic(f"127.0.0.1:{proxy.port}", "idem", partitions=2)
    producer = Producer(
        {
            "bootstrap.servers": f"127.0.0.1:{proxy.port}",
            "enable.idempotence": True,
            "linger.ms": 5,
            "batch.num.messages": 200,
            "message.timeout.ms": 60000,
        }
    )
    errors = []
    # Keep producing until the proxy has cut the connections three times mid-stream.
    count = 0
    deadline = time.time() + 60
    while (proxy.cuts < 3 or count < 20000) and time.time() < deadline:
        try:
            producer.produce("idem", value=str(count).encode(), partition=count % 2,
                             on_delivery=lambda err, msg: err and errors.append(err))
            count += 1
        except BufferError:
            producer.poll(0.05)
        producer.poll(0)
    assert producer.flush(90) == 0
    assert not errors, errors[:3]
    assert proxy.cuts >= 3, "the proxy did not cut the connections"
    assert_exactly_once_in_order_via(proxy, "idem", 2, count)


def assert_exactly_once_in_order_via(proxy, topic, partitions, count):
    proxy.cutting.clear()  # read back through the proxy without interruptions
    got = consume_to_end(f"127.0.0.1:{proxy.port}", topic, partitions)
    values = [int(m.value()) for m in got]
    assert len(values) == len(set(values)), f"{len(values) - len(set(values))} duplicates"
    assert sorted(values) == list(range(count)), f"{count - len(set(values))} records missing"
    for p in range(partitions):
        in_partition = [int(m.value()) for m in got if m.partition() == p]
        assert in_partition == sorted(in_partition), f"partition {p} out of order"


def test_java_idempotent_producer_with_defaults_survives_connection_cuts(proxied_broker):
    broker, proxy = proxied_broker
    bootstrap = f"127.0.0.1:{proxy.port}"
    create_topic(bootstrap, "jidem", partitions=2)
    count = 400000  # a few seconds of producing: the proxy cuts the connections meanwhile
    out = run_java("IdempotentProduce.java", bootstrap, "jidem", count, timeout=240)
    lines = dict(line.split("=", 1) for line in out.strip().splitlines())
    assert lines["acked"] == str(count)
    assert proxy.cuts >= 2
    assert_exactly_once_in_order_via(proxy, "jidem", 2, count)


def test_idempotent_producer_across_broker_crash(broker):
    """kill -9 in the middle of an idempotent stream: the producer retries what it did not see
    acknowledged, and the restarted broker (producer state rebuilt from its snapshot and the
    log) must recognise the batches it had already written."""
    import os
    import subprocess

    from conftest import JARS, JAVA_DIR

    create_topic(broker.bootstrap, "crash-idem", partitions=2)
    count = 200000
    classpath = os.pathsep.join(str(p) for p in sorted(JARS.glob("*.jar")))
    producer = subprocess.Popen(
        ["java", "-cp", classpath, str(JAVA_DIR / "IdempotentProduce.java"), broker.bootstrap, "crash-idem", str(count)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        # Crash the broker once the stream is well under way.
        consumer_deadline = time.time() + 60
        while time.time() < consumer_deadline:
            m = broker.log_records()
            written = [r for r in m if r.get("msg") == "producer id assigned"]
            if written:
                break
            time.sleep(0.05)
        from confluent_kafka import Consumer, TopicPartition

        probe = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "probe"})
        while time.time() < consumer_deadline:
            high = sum(probe.get_watermark_offsets(TopicPartition("crash-idem", p), timeout=10)[1] for p in (0, 1))
            if high >= count // 4:
                break
            time.sleep(0.05)
        probe.close()
        broker.kill()
        broker.start()
        out, err = producer.communicate(timeout=240)
    finally:
        if producer.poll() is None:
            producer.kill()
    assert producer.returncode == 0, err[-3000:]
    assert "acked=%d" % count in out
    got = consume_to_end(broker.bootstrap, "crash-idem", 2)
    values = [int(m.value()) for m in got]
    assert len(values) == len(set(values)), f"{len(values) - len(set(values))} duplicates after the crash"
    assert sorted(values) == list(range(count))
