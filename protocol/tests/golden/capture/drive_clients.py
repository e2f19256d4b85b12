#!/usr/bin/env python3
"""Drive real Kafka clients against the capture_frames listener.

Usage: drive_clients.py PORT
Runs confluent-kafka (librdkafka) and kafka-python producers; each sends a few
keyed records with headers to topic "golden" and flushes.
"""
import sys

port = int(sys.argv[1])
bootstrap = f"127.0.0.1:{port}"

from confluent_kafka import Producer, libversion

print("librdkafka", libversion())
for codec in ["none", "lz4"]:
    p = Producer({
        "bootstrap.servers": bootstrap,
        "client.id": f"rdkafka-{codec}",
        "compression.codec": codec,
        "linger.ms": 50,
        "acks": "all",
        "enable.idempotence": codec == "lz4",
    })
    for i in range(3):
        p.produce("golden", key=f"k{i}".encode(), value=f"value-{i}".encode() * 4,
                  headers=[("h", b"v")], timestamp=1_700_000_000_000 + i)
    left = p.flush(10)
    print(codec, "unflushed", left)

import kafka
from kafka import KafkaProducer

print("kafka-python", kafka.__version__)
kp = KafkaProducer(bootstrap_servers=bootstrap, client_id="kafka-python", acks=1,
                   linger_ms=50)
for i in range(3):
    kp.send("golden", key=f"k{i}".encode(), value=f"value-{i}".encode(),
            headers=[("h", b"v")], timestamp_ms=1_700_000_000_000 + i)
kp.flush(10)
kp.close(5)
