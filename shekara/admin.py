"""Topic administration with confluent-kafka's AdminClient: create the catalogue, idempotently."""

from __future__ import annotations

import time

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from shekara.settings import Settings
from shekara.topics import TopicSpec, catalogue


def admin_client(settings: Settings) -> AdminClient:
    return AdminClient(settings.kafka_config())


def wait_for_broker(settings: Settings, timeout: float = 30.0) -> None:
    """Block until the broker answers a metadata request, or raise TimeoutError."""
    client = admin_client(settings)
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            client.list_topics(timeout=2)
            return
        except KafkaException as exc:
            last = exc
            time.sleep(0.2)
    raise TimeoutError(f"broker at {settings.bootstrap_servers} did not answer within {timeout:.0f}s: {last}")


def ensure_topics(settings: Settings, specs: list[TopicSpec] | None = None) -> list[str]:
    """Create the topics that do not exist yet; returns the names created. Safe to run twice."""
    client = admin_client(settings)
    specs = specs if specs is not None else catalogue(settings)
    existing = set(client.list_topics(timeout=10).topics)
    wanted = [
        NewTopic(s.name, num_partitions=s.partitions, replication_factor=_replication(settings), config=s.config)
        for s in specs
        if s.name not in existing
    ]
    if not wanted:
        return []
    created = []
    for name, future in client.create_topics(wanted, operation_timeout=10).items():
        try:
            future.result()
            created.append(name)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
    return created


def _replication(settings: Settings) -> int:
    # Embedded Tansu is one broker; the compose cluster is one KRaft broker too (see docker-compose.yml).
    return 1
