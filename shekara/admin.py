"""Topic administration with confluent-kafka's AdminClient: create the catalogue, idempotently, and keep the
retention of topics that exist already to the catalogue's (a lowered `source_retention_days` applies to them)."""

from __future__ import annotations

import time
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, NewTopic

from shekara.logs import get_logger
from shekara.settings import Settings
from shekara.topics import TopicSpec, catalogue

log = get_logger(__name__)


def admin_client(settings: Settings) -> AdminClient:
    return AdminClient(settings.kafka_config())


class Unreachable(Exception):
    """A command cannot reach the broker or the warehouse: `str()` is the one line to say; the command exits 2."""


class BrokerTimeout(Unreachable, TimeoutError):
    """`wait_for_broker` gave up: a TimeoutError to its callers, one line to the `shekara` command."""


def unreachable_line(settings: Settings) -> str:
    hint = "is `shekara up` running?" if settings.mode == "embedded" else "is the broker up? see docker-compose.yml"
    return f"cannot reach the Kafka broker at {settings.bootstrap_servers} ({hint})"


def require_broker(settings: Settings, timeout: float | None = None) -> None:
    """Wait up to `timeout` (default `reach_timeout_seconds`) for the broker to answer; `Unreachable` if it does not."""
    wait_for_broker(settings, settings.reach_timeout_seconds if timeout is None else timeout)


def is_unreachable(exc: BaseException) -> bool:
    """A confluent-kafka error that means no broker answered (rather than one that answered no)."""
    if not isinstance(exc, KafkaException) or not exc.args or not isinstance(exc.args[0], KafkaError):
        return False
    return exc.args[0].code() in (KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN)


def wait_for_broker(settings: Settings, timeout: float = 30.0) -> None:
    """Block until the broker answers a metadata request, or raise `BrokerTimeout` (a TimeoutError)."""
    client = admin_client(settings)
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            client.list_topics(timeout=max(0.1, min(2.0, deadline - time.monotonic())))
            return
        except KafkaException as exc:
            last = exc
            time.sleep(0.2)
    log.debug("broker did not answer", broker=settings.bootstrap_servers, seconds=timeout, error=str(last))
    raise BrokerTimeout(unreachable_line(settings))


class WrongLayout(Exception):
    """Topics with another partition count than the catalogue's: `str()` is the one line to say (exit 2)."""


def wrong_counts(specs: list[TopicSpec], counts: dict[str, int]) -> list[str]:
    """What is wrong with the partition counts `counts` (topic -> count, existing topics) against `specs`."""
    return [
        f"topic {s.name} has {counts[s.name]} partitions, the catalogue {s.partitions}"
        for s in specs
        if s.name in counts and counts[s.name] != s.partitions
    ]


def _check_layout(topics: dict[str, Any], specs: list[TopicSpec], settings: Settings) -> None:
    """`WrongLayout` if a topic of `specs` among the listed `topics` has another partition count."""
    problems = wrong_counts(specs, {n: len(t.partitions) for n, t in topics.items() if t.error is None})
    if problems:
        # Events are placed by CRC-32 of the key modulo the count (shekara.partitioning): a topic with another
        # count splits travellers across workers. Only a client can have made it: one that created it by using it
        # (the broker's default count), e.g. after an in-memory broker restarted before the topics were made.
        where = "restart `shekara up`" if settings.mode == "embedded" else "delete and recreate them"
        more = f" (and {len(problems) - 2} more)" if len(problems) > 2 else ""
        raise WrongLayout(
            f"{'; '.join(problems[:2])}{more}: a client created it by using it; {where}, then run the clients"
        )


def ensure_topics(settings: Settings, specs: list[TopicSpec] | None = None) -> list[str]:
    """Create the topics that do not exist yet; returns the names created. Safe to run twice.

    Topics that exist get the catalogue's ``retention.ms`` if theirs differs (see `align_retention`).
    `WrongLayout` (one line) if a topic exists with another partition count than the catalogue's, before or
    after creating (a client racing us may have created one by using it).
    """
    client = admin_client(settings)
    specs = specs if specs is not None else catalogue(settings)
    listed = client.list_topics(timeout=10).topics
    _check_layout(listed, specs, settings)
    existing = set(listed)
    align_retention(client, [s for s in specs if s.name in existing])
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
    _check_layout(client.list_topics(timeout=10).topics, specs, settings)
    return created


def align_retention(client: AdminClient, specs: list[TopicSpec]) -> list[str]:
    """Set ``retention.ms`` of the existing topics `specs` to the catalogue's where it differs; returns their names.

    A topic created when the sources kept 5 years would otherwise keep its clear personal data that long.
    """
    wanted = {s.name: s.config["retention.ms"] for s in specs if "retention.ms" in s.config}
    if not wanted:
        return []
    described = client.describe_configs([ConfigResource("topic", name) for name in wanted])
    changes = []
    for resource, future in described.items():
        entry = future.result().get("retention.ms")
        if entry is None or entry.value != wanted[resource.name]:
            entries = [ConfigEntry("retention.ms", wanted[resource.name], incremental_operation=AlterConfigOpType.SET)]
            changes.append(ConfigResource("topic", resource.name, incremental_configs=entries))
    for resource, future in client.incremental_alter_configs(changes).items() if changes else ():
        future.result()
        log.info("topic retention set", topic=resource.name, retention_ms=wanted[resource.name])
    return sorted(r.name for r in changes)


def _replication(settings: Settings) -> int:
    # Embedded Tansu is one broker; the compose cluster is one KRaft broker too (see docker-compose.yml).
    return 1
