"""Shared fixtures: a real embedded broker per test session, settings that point at it, temp chDB dirs."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from shekara.admin import ensure_topics, wait_for_broker
from shekara.embedded import EmbeddedBroker, launch
from shekara.settings import Settings, TopicNames


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    """One real Tansu broker for the whole test session."""
    log = tmp_path_factory.mktemp("broker") / "broker.log"
    b = launch(log_path=log)
    try:
        yield b
    finally:
        b.stop()


@pytest.fixture
def settings(broker: EmbeddedBroker, tmp_path: Path) -> Settings:
    """Settings for one test: the session broker, fresh topic names (no cross-test leakage), temp dirs."""
    suffix = uuid.uuid4().hex[:8]
    names = {k: f"{v}.{suffix}" for k, v in TopicNames().model_dump().items()}
    # Consumer groups of its own too: a group shared with an earlier test shares its changelogs (their partition
    # counts, their state) and, on Tansu, waits out the rebalance of that test's departed members.
    groups = Settings()
    s = Settings(
        broker_url=broker.url,
        data_dir=tmp_path / "var",
        clickhouse_dsn=f"chdb://{tmp_path / 'clickhouse'}",
        partitions=4,
        topics=TopicNames(**names),
        faust=groups.faust.model_copy(update={"app_id": f"{groups.faust.app_id}.{suffix}"}),
        sink=groups.sink.model_copy(update={"group_id": f"{groups.sink.group_id}.{suffix}"}),
        notify=groups.notify.model_copy(update={"group_id": f"{groups.notify.group_id}.{suffix}"}),
    )
    wait_for_broker(s)
    ensure_topics(s)
    return s


def one_partition(settings: Settings) -> Settings:
    """`settings` with one partition per topic (fresh topics): every event on partition 0, where its key belongs
    (the processors refuse an event off its key's partition), so one partition's watermark governs them all."""
    names = {k: f"{v}.p1" for k, v in settings.topics.model_dump().items()}
    faust = settings.faust.model_copy(update={"app_id": f"{settings.faust.app_id}.p1"})  # changelogs of 1 partition
    one = settings.model_copy(update={"partitions": 1, "topics": TopicNames(**names), "faust": faust})
    ensure_topics(one)
    return one
