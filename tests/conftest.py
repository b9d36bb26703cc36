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
    s = Settings(
        broker_url=broker.url,
        data_dir=tmp_path / "var",
        clickhouse_dsn=f"chdb://{tmp_path / 'clickhouse'}",
        partitions=4,
        topics=TopicNames(**names),
    )
    wait_for_broker(s)
    ensure_topics(s)
    return s


def one_partition(settings: Settings) -> Settings:
    """`settings` with one partition per topic (fresh topics): every event on partition 0, where its key belongs
    (the processors refuse an event off its key's partition), so one partition's watermark governs them all."""
    names = {k: f"{v}.p1" for k, v in settings.topics.model_dump().items()}
    one = settings.model_copy(update={"partitions": 1, "topics": TopicNames(**names)})
    ensure_topics(one)
    return one
