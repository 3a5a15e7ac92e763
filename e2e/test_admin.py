"""Topic admin round trips with confluent-kafka AdminClient and kafka-python KafkaAdminClient."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import (
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewPartitions,
    NewTopic,
    ResourceType,
)

from floe_e2e import admin_client, produce_and_flush, producer, topic_partitions, unique_name, wait_for

KAFKA_DEFAULT_RETENTION_MS = "604800000"


def source(entry) -> int:
    """ConfigEntry.source as an int (the C layer may hand back an int or the enum)."""
    return int(getattr(entry.source, "value", entry.source))


def describe_topic_configs(admin, topic: str) -> dict:
    res = ConfigResource(ResourceType.TOPIC, topic)
    return admin.describe_configs([res], request_timeout=15)[res].result(timeout=30)


# ---------------------------------------------------------------- confluent-kafka


def test_confluent_admin_topic_lifecycle(floe):
    admin = admin_client(floe.bootstrap)
    topic = unique_name("adm-ck")

    # create with a config
    futs = admin.create_topics(
        [NewTopic(topic, num_partitions=2, replication_factor=1, config={"retention.ms": "3600000"})],
        operation_timeout=15,
        request_timeout=20,
    )
    assert futs[topic].result(timeout=30) is None
    wait_for(lambda: len(topic_partitions(floe.bootstrap, topic)) == 2, 30, "2 partitions in Metadata")
    md = admin.list_topics(timeout=10)
    assert topic in md.topics
    assert [b.id for b in md.brokers.values()] == [1], md.brokers
    assert all(p.leader == 1 for p in md.topics[topic].partitions.values())

    # describe configs
    cfg = describe_topic_configs(admin, topic)
    assert cfg["retention.ms"].value == "3600000", cfg["retention.ms"]
    assert source(cfg["retention.ms"]) == ConfigSource.DYNAMIC_TOPIC_CONFIG.value, cfg["retention.ms"].source
    assert not cfg["retention.ms"].is_default
    assert not cfg["retention.ms"].is_read_only

    # creating it again: TOPIC_ALREADY_EXISTS
    futs = admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)], request_timeout=20)
    with pytest.raises(KafkaException) as ei:
        futs[topic].result(timeout=30)
    assert ei.value.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS, ei.value

    # legacy (non-incremental) AlterConfigs
    res = ConfigResource(ResourceType.TOPIC, topic, set_config={"retention.ms": "7200000"})
    admin.alter_configs([res], request_timeout=15)[res].result(timeout=30)
    assert describe_topic_configs(admin, topic)["retention.ms"].value == "7200000"

    # IncrementalAlterConfigs: SET, then DELETE back to the default
    res = ConfigResource(
        ResourceType.TOPIC,
        topic,
        incremental_configs=[ConfigEntry("retention.ms", "1800000", incremental_operation=AlterConfigOpType.SET)],
    )
    admin.incremental_alter_configs([res], request_timeout=15)[res].result(timeout=30)
    assert describe_topic_configs(admin, topic)["retention.ms"].value == "1800000"

    res = ConfigResource(
        ResourceType.TOPIC,
        topic,
        incremental_configs=[ConfigEntry("retention.ms", None, incremental_operation=AlterConfigOpType.DELETE)],
    )
    admin.incremental_alter_configs([res], request_timeout=15)[res].result(timeout=30)
    entry = describe_topic_configs(admin, topic)["retention.ms"]
    assert source(entry) != ConfigSource.DYNAMIC_TOPIC_CONFIG.value, entry.source
    assert entry.value == KAFKA_DEFAULT_RETENTION_MS, entry

    # the broker resource can be described too
    bres = ConfigResource(ResourceType.BROKER, "1")
    bcfg = admin.describe_configs([bres], request_timeout=15)[bres].result(timeout=30)
    assert isinstance(bcfg, dict)

    # DescribeCluster
    cluster = admin.describe_cluster(request_timeout=15).result(timeout=30)
    assert [n.id for n in cluster.nodes] == [1]
    assert cluster.controller is not None and cluster.controller.id == 1
    assert cluster.cluster_id

    # create partitions: 2 -> 4, and the new partitions take writes
    futs = admin.create_partitions([NewPartitions(topic, 4)], operation_timeout=15, request_timeout=20)
    assert futs[topic].result(timeout=30) is None
    wait_for(lambda: len(topic_partitions(floe.bootstrap, topic)) == 4, 30, "4 partitions in Metadata")
    p = producer(floe.bootstrap, **{"topic.metadata.refresh.interval.ms": 1000})
    delivered = []
    p.produce(topic, value=b"to-p3", partition=3, on_delivery=lambda e, m: delivered.append((e, m.partition(), m.offset())))
    produce_and_flush(p, 60)
    assert delivered == [(None, 3, 0)], delivered

    # shrinking is refused
    futs = admin.create_partitions([NewPartitions(topic, 2)], request_timeout=20)
    with pytest.raises(KafkaException) as ei:
        futs[topic].result(timeout=30)
    assert ei.value.args[0].code() == KafkaError.INVALID_PARTITIONS, ei.value

    # delete
    futs = admin.delete_topics([topic], operation_timeout=15, request_timeout=20)
    assert futs[topic].result(timeout=30) is None
    wait_for(lambda: topic not in admin.list_topics(timeout=10).topics, 30, "deleted topic to leave Metadata")

    # deleting a missing topic: UNKNOWN_TOPIC_OR_PART
    futs = admin.delete_topics([topic], request_timeout=20)
    with pytest.raises(KafkaException) as ei:
        futs[topic].result(timeout=30)
    assert ei.value.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART, ei.value


def test_confluent_admin_list_offsets(floe):
    from confluent_kafka.admin import OffsetSpec

    admin = admin_client(floe.bootstrap)
    topic = unique_name("adm-lo")
    admin.create_topics([NewTopic(topic, 1, 1)], request_timeout=20)[topic].result(timeout=30)
    wait_for(lambda: len(topic_partitions(floe.bootstrap, topic)) == 1, 30, "topic in Metadata")
    p = producer(floe.bootstrap)
    base = (int(time.time()) - 3600) * 1000  # recent: old records could be retention-eligible
    for i in range(10):
        p.produce(topic, value=f"v{i}".encode(), partition=0, timestamp=base + i * 1000)
    produce_and_flush(p, 60)
    tp = TopicPartition(topic, 0)

    def lookup(spec):
        return admin.list_offsets({tp: spec}, request_timeout=15)[tp].result(timeout=30)

    assert lookup(OffsetSpec.earliest()).offset == 0
    assert lookup(OffsetSpec.latest()).offset == 10
    r = lookup(OffsetSpec.for_timestamp(base + 4500))
    assert (r.offset, r.timestamp) == (5, base + 5000), (r.offset, r.timestamp)
    r = lookup(OffsetSpec.for_timestamp(base + 60_000))  # after the last record
    assert r.offset == -1, r.offset
    r = lookup(OffsetSpec.max_timestamp())  # ListOffsets v7
    assert (r.offset, r.timestamp) == (9, base + 9000), (r.offset, r.timestamp)


# ---------------------------------------------------------------- kafka-python


def test_kafka_python_admin_topic_lifecycle(floe):
    from kafka.admin import AlterConfigOp, ConfigResource as KPConfigResource, KafkaAdminClient
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(bootstrap_servers=floe.bootstrap, request_timeout_ms=15000, client_id="e2e-kafka-python")
    try:
        topic = unique_name("adm-kp")
        res = admin.create_topics(
            {topic: {"num_partitions": 2, "replication_factor": 1, "configs": {"retention.ms": "3600000"}}},
            timeout_ms=15000,
            wait_for_metadata=True,
        )
        assert [(t["name"], t["error_code"]) for t in res["topics"]] == [(topic, 0)], res
        assert topic in admin.list_topics()

        desc = admin.describe_topics([topic])
        assert len(desc) == 1 and desc[0]["name"] == topic and desc[0]["error_code"] == 0, desc
        assert sorted(p["partition_index"] for p in desc[0]["partitions"]) == [0, 1]

        def retention():
            cfgs = admin.describe_configs([KPConfigResource("TOPIC", topic)], config_filter="all")
            return cfgs["topic"][topic]["retention.ms"]

        r = retention()
        assert r["value"] == "3600000", r
        assert r["config_source"] == "DYNAMIC_TOPIC_CONFIG", r

        # 'modified' filter (the default) shows exactly the topic override
        modified = admin.describe_configs([KPConfigResource("TOPIC", topic)])["topic"][topic]
        assert set(modified) == {"retention.ms"}, modified

        with pytest.raises(TopicAlreadyExistsError):
            admin.create_topics({topic: {"num_partitions": 2, "replication_factor": 1}}, timeout_ms=15000)

        # legacy AlterConfigs
        out = admin.alter_configs([KPConfigResource("TOPIC", topic, {"retention.ms": "7200000"})], incremental=False)
        assert out == {"topic": {topic: "OK"}}, out
        assert retention()["value"] == "7200000"

        # IncrementalAlterConfigs
        out = admin.alter_configs(
            [KPConfigResource("TOPIC", topic, {"retention.ms": (AlterConfigOp.SET, "1800000")})], incremental=True
        )
        assert out == {"topic": {topic: "OK"}}, out
        assert retention()["value"] == "1800000"

        out = admin.alter_configs(
            [KPConfigResource("TOPIC", topic, {"retention.ms": (AlterConfigOp.DELETE, None)})], incremental=True
        )
        assert out == {"topic": {topic: "OK"}}, out
        r = retention()
        assert r["config_source"] != "DYNAMIC_TOPIC_CONFIG" and r["value"] == KAFKA_DEFAULT_RETENTION_MS, r

        res = admin.create_partitions({topic: 3}, timeout_ms=15000)
        assert [(x.name, x.error_code) for x in res.results] == [(topic, 0)], res
        wait_for(lambda: len(topic_partitions(floe.bootstrap, topic)) == 3, 30, "3 partitions in Metadata")

        cluster = admin.describe_cluster()
        assert [b["broker_id"] for b in cluster["brokers"]] == [1], cluster
        assert cluster["controller_id"] == 1, cluster

        res = admin.delete_topics([topic], timeout_ms=15000)
        assert [(t["name"], t["error_code"]) for t in res["topics"]] == [(topic, 0)], res
        wait_for(lambda: topic not in admin.list_topics(), 30, "deleted topic to leave list_topics")
    finally:
        admin.close()
