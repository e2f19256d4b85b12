"""Topic administration through real admin clients: the Java AdminClient, confluent-kafka's
AdminClient and kcat -L."""

import shutil
import subprocess

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
)
from confluent_kafka import KafkaException

from conftest import run_java
from test_produce_fetch import consume_all, create_topic, produce_all


def test_java_admin_client_lifecycle(broker):
    out = run_java("AdminOps.java", broker.bootstrap)
    lines = dict(line.split("=", 1) for line in out.strip().splitlines())
    assert lines["created"] == "admin-a:3,admin-b:1"
    assert lines["duplicateError"] == "TopicExistsException"
    assert lines["invalidRfError"] == "InvalidReplicationFactorException"
    assert lines["validateOnlyCreated"] == "false"
    assert lines["retention.ms"] == "3600000"
    assert lines["retention.ms.source"] == "DYNAMIC_TOPIC_CONFIG"
    assert lines["compactError"] == "InvalidConfigurationException"
    assert lines["partitionsAfterGrow"] == "6"
    assert lines["lowWatermark"] == "5"
    assert lines["earliestAfterDelete"] == "5"
    assert lines["latest"] == "10"
    assert lines["logDirPartitions"] == "6"
    assert lines["topicsAfterDelete"] == "admin-b"


def test_confluent_admin_configs_partitions_and_delete(broker):
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    create_topic(broker.bootstrap, "cfg", partitions=2)

    res = ConfigResource(ConfigResource.Type.TOPIC, "cfg")
    configs = admin.describe_configs([res])[res].result(timeout=10)
    assert configs["retention.ms"].value == str(168 * 3600 * 1000)
    assert configs["cleanup.policy"].value == "delete"

    res_set = ConfigResource(
        ConfigResource.Type.TOPIC,
        "cfg",
        incremental_configs=[
            ConfigEntry("retention.bytes", "1048576", incremental_operation=AlterConfigOpType.SET),
            ConfigEntry("message.timestamp.type", "LogAppendTime", incremental_operation=AlterConfigOpType.SET),
        ],
    )
    admin.incremental_alter_configs([res_set])[res_set].result(timeout=10)
    configs = admin.describe_configs([res])[res].result(timeout=10)
    assert configs["retention.bytes"].value == "1048576"
    assert configs["message.timestamp.type"].value == "LogAppendTime"

    # LogAppendTime: the broker's clock replaces the producer's timestamp.
    produce_all(broker.bootstrap, "cfg", [(0, None, b"t", None)])
    got = consume_all(broker.bootstrap, "cfg", 1, 1)
    ts_type, ts = got[0].timestamp()
    assert ts_type == 2 and ts > 1_600_000_000_000  # TIMESTAMP_LOG_APPEND_TIME

    bad = ConfigResource(
        ConfigResource.Type.TOPIC,
        "cfg",
        incremental_configs=[ConfigEntry("cleanup.policy", "compact", incremental_operation=AlterConfigOpType.SET)],
    )
    with pytest.raises(KafkaException) as err:
        admin.incremental_alter_configs([bad])[bad].result(timeout=10)
    assert "compact" in str(err.value)

    admin.create_partitions([NewPartitions("cfg", 5)])["cfg"].result(timeout=10)
    assert len(admin.list_topics(timeout=10).topics["cfg"].partitions) == 5
    produce_all(broker.bootstrap, "cfg", [(4, None, b"new partition", None)])
    assert [m.value() for m in consume_all(broker.bootstrap, "cfg", 5, 2) if m.partition() == 4] == [b"new partition"]

    admin.delete_topics(["cfg"])["cfg"].result(timeout=10)
    assert "cfg" not in admin.list_topics(timeout=10).topics
    # The name can be reused: a new topic starts empty.
    create_topic(broker.bootstrap, "cfg", partitions=1)
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "x"})
    assert consumer.get_watermark_offsets(TopicPartition("cfg", 0), timeout=10) == (0, 0)
    consumer.close()


def test_auto_create_on_metadata(broker):
    produce_all(broker.bootstrap, "auto-created", [(None, None, b"hello", None)] if False else [(0, None, b"hello", None)])
    md = AdminClient({"bootstrap.servers": broker.bootstrap}).list_topics(timeout=10)
    assert len(md.topics["auto-created"].partitions) == 1


def test_auto_create_can_be_disabled(broker_factory):
    b = broker_factory(["-o", "auto.create.topics.enable=false"])
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    md = admin.list_topics(topic="nope", timeout=10)
    assert md.topics["nope"].error is not None
    assert "nope" not in [t for t, m in admin.list_topics(timeout=10).topics.items() if m.error is None]


@pytest.mark.skipif(shutil.which("kcat") is None, reason="kcat is installed by .ci/run")
def test_kcat_lists_metadata(broker):
    create_topic(broker.bootstrap, "kcat-topic", partitions=3)
    out = subprocess.run(["kcat", "-b", broker.bootstrap, "-L"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert f"broker 1 at 127.0.0.1:{broker.port}" in out.stdout
    assert 'topic "kcat-topic" with 3 partitions' in out.stdout
    for p in range(3):
        assert f"partition {p}, leader 1, replicas: 1, isrs: 1" in out.stdout
