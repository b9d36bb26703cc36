"""The embedded stack: broker lifecycle, topic catalogue, clear errors."""

from __future__ import annotations

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource

from shekara.admin import ensure_topics
from shekara.embedded import BrokerError, EmbeddedBroker, launch
from shekara.settings import Settings
from shekara.topics import catalogue

pytestmark = pytest.mark.integration


def test_catalogue_topics_exist_with_partitions(settings: Settings) -> None:
    md = AdminClient({"bootstrap.servers": settings.bootstrap_servers}).list_topics(timeout=5)
    for spec in catalogue(settings):
        assert spec.name in md.topics
        assert len(md.topics[spec.name].partitions) == spec.partitions


def test_stays_topic_is_compacted(settings: Settings) -> None:
    client = AdminClient({"bootstrap.servers": settings.bootstrap_servers})
    res = ConfigResource(ConfigResource.Type.TOPIC, settings.topics.stays)
    configs = client.describe_configs([res])[res].result()
    assert configs["cleanup.policy"].value == "compact"


def test_ensure_topics_is_idempotent(settings: Settings) -> None:
    assert ensure_topics(settings) == []


def test_port_taken_gives_clear_error(broker: EmbeddedBroker) -> None:
    with pytest.raises(BrokerError, match="already in use"):
        launch(broker.port)


def test_missing_binary_gives_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALF_TANSU_BIN", "/nonexistent/tansu")
    with pytest.raises(BrokerError, match="cannot find the Tansu broker binary"):
        launch()
