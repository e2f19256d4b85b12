#!/usr/bin/env python3
"""Drive real Kafka consumers and admin clients against the capture_frames listener.

Usage: drive_consumers.py PORT
confluent-kafka: a consumer with group.id and assign() (FindCoordinator,
OffsetFetch, ListOffsets, Fetch) and an AdminClient (CreateTopics,
DescribeConfigs); kafka-python: a group-less consumer with assign().
"""
import sys, time

port = int(sys.argv[1])
bootstrap = f"127.0.0.1:{port}"

from confluent_kafka import Consumer, TopicPartition, OFFSET_BEGINNING
from confluent_kafka.admin import AdminClient, NewTopic, ConfigResource

c = Consumer({"bootstrap.servers": bootstrap, "client.id": "rdkafka-consumer",
              "group.id": "golden-group", "enable.auto.commit": False,
              "fetch.wait.max.ms": 100})
c.assign([TopicPartition("golden", 0, OFFSET_BEGINNING)])
end = time.time() + 3
while time.time() < end:
    c.poll(0.2)
c.close()

a = AdminClient({"bootstrap.servers": bootstrap, "client.id": "rdkafka-admin"})
fs = a.create_topics([NewTopic("golden-admin", num_partitions=3, replication_factor=1,
                               config={"retention.ms": "3600000"})], request_timeout=5)
for t, f in fs.items():
    print("create", t, f.result(10))
fs = a.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, "golden")], request_timeout=5)
for r, f in fs.items():
    print("describe", r, sorted(f.result(10)))

from kafka import KafkaConsumer, TopicPartition as KTP

k = KafkaConsumer(bootstrap_servers=bootstrap, client_id="kafka-python-consumer",
                  group_id=None, fetch_max_wait_ms=100, consumer_timeout_ms=2000)
k.assign([KTP("golden", 0)])
k.seek_to_beginning()
for _ in k:
    pass
k.close()
