"""Harness for black-box tests: real `sluice` processes on loopback, driven by real clients.

A broker is started on 127.0.0.1:0 with JSON logs; its log line announcing the Kafka listener
gives the port. Every broker gets its own temporary data directory and is stopped (SIGTERM,
then SIGKILL) when the test ends.
"""

import json
import os
import queue
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

TEST_SLUICE_BIN = os.environ.get("TEST_SLUICE_BIN", "target/release/sluice")
JARS = Path(os.environ.get("TEST_SLUICE_JARS", Path.home() / ".cache/sluice/jars"))
JAVA_DIR = Path(__file__).parent / "java"
START_TIMEOUT = 30


class Broker:
    """One `sluice` process."""

    def __init__(self, data_dir, extra_args=()):
        self.data_dir = Path(data_dir)
        self.extra_args = list(extra_args)
        self.listen = "127.0.0.1:0"
        self.proc = None
        self.port = None
        self.metrics_port = None
        self.lines = []
        self._events = queue.Queue()

    @property
    def bootstrap(self):
        return f"127.0.0.1:{self.port}"

    def start(self):
        """Starts the process and waits for its listener; restarts reuse the first start's
        port, as clients expect."""
        self.launch()
        return self.wait_started()

    def launch(self):
        """Starts the process without waiting (brokers of one cluster wait for each other)."""
        self.port = None
        self.lines = []
        self._events = queue.Queue()
        args = [
            TEST_SLUICE_BIN,
            "--data-dir", str(self.data_dir),
            "--listen", self.listen,
            "--metrics-listen", "127.0.0.1:0",
            *([] if "--raft-listen" in self.extra_args else ["--raft-listen", "127.0.0.1:0"]),
            "--log-format", "json",
            # Small preallocated segments: 16 pchannels x 8 MiB per broker.
            "-o", "log.segment.bytes=8388608",
            *self.extra_args,
        ]
        self.proc = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        threading.Thread(target=self._read_log, daemon=True).start()
        return self

    def wait_started(self):
        """Waits for the line announcing the Kafka listener."""
        while self.port is None:
            try:
                kind, value = self._events.get(timeout=START_TIMEOUT)
            except queue.Empty:
                raise RuntimeError("sluice did not announce its listener:\n" + self.log_text())
            if kind == "exit":
                raise RuntimeError(f"sluice exited with {value}:\n" + self.log_text())
            if kind == "kafka":
                self.port = value
                self.listen = f"127.0.0.1:{value}"
            elif kind == "metrics":
                self.metrics_port = value
        return self

    def _read_log(self):
        events = self._events
        for line in self.proc.stderr:
            self.lines.append(line)
            try:
                record = json.loads(line)
            except ValueError:
                continue
            addr = record.get("addr")
            if record.get("msg") == "kafka listener accepting" and addr:
                events.put(("kafka", int(addr.rsplit(":", 1)[1])))
            elif record.get("msg") == "metrics endpoint listening" and addr:
                events.put(("metrics", int(addr.rsplit(":", 1)[1])))
        events.put(("exit", self.proc.wait()))

    def log_text(self):
        return "".join(self.lines[-200:])

    def log_records(self):
        out = []
        for line in list(self.lines):
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
        return out

    def wait_for_log(self, predicate, count=1, timeout=10):
        """Waits until `count` log records satisfy `predicate` (logging is asynchronous)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            matching = [r for r in self.log_records() if predicate(r)]
            if len(matching) >= count:
                return matching
            time.sleep(0.05)
        return [r for r in self.log_records() if predicate(r)]

    def stop(self, timeout=20):
        """SIGTERM and wait: the graceful path. Returns the exit code."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise
        return self.proc.returncode if self.proc else None

    def kill(self):
        """SIGKILL: the crash path."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def restart(self):
        """Graceful stop, then start on the same port and data directory."""
        assert self.stop() == 0
        return self.start()


@pytest.fixture
def broker_factory(tmp_path):
    brokers = []

    def make(extra_args=(), data_dir=None, start=True):
        b = Broker(data_dir or tmp_path / f"broker{len(brokers)}", extra_args)
        brokers.append(b)
        return b.start() if start else b

    yield make
    for b in brokers:
        b.kill()


@pytest.fixture
def broker(broker_factory):
    return broker_factory()


def run_java(program, *args, timeout=120):
    """Runs a single-file Java program from tests/clients/java with the Kafka client jars."""
    classpath = os.pathsep.join(str(p) for p in sorted(JARS.glob("*.jar")))
    result = subprocess.run(
        ["java", "-cp", classpath, str(JAVA_DIR / program), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if result.returncode != 0:
        raise AssertionError(
            f"{program} exited with {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr[-4000:]}"
        )
    return result.stdout
