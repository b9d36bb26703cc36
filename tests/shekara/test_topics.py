"""Topic retention: the clear source topics keep `source_retention_days`, created so and lowered if they exist."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource
from pydantic import ValidationError

from shekara.admin import admin_client, align_retention, ensure_topics
from shekara.settings import Settings
from shekara.topics import DAY_MS, catalogue

# Topics that carry source events in clear: the sources, their re-keyed copy, dead letters with the payload.
CLEAR = ("crossings", "registrations", "status_changes", "address_registrations", "dead_letter")


def retention_days(settings: Settings) -> dict[str, float]:
    names = settings.topics.model_dump()
    by_name = {spec.name: spec for spec in catalogue(settings)}
    return {field: int(by_name[names[field]].config["retention.ms"]) / DAY_MS for field in CLEAR}


def test_clear_topics_keep_the_setting_30_days_by_default() -> None:
    assert retention_days(Settings()) == dict.fromkeys(CLEAR, 30)
    assert retention_days(Settings(source_retention_days=7)) == dict.fromkeys(CLEAR, 7)


def test_the_setting_comes_from_the_environment_and_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHEKARA_SOURCE_RETENTION_DAYS", "14")
    assert Settings().source_retention_days == 14
    for bad in ("0", "-1", "forever", "10000"):
        monkeypatch.setenv("SHEKARA_SOURCE_RETENTION_DAYS", bad)
        with pytest.raises(ValidationError, match="source_retention_days"):
            Settings()


def broker_retention_days(settings: Settings, topic: str) -> float:
    client = AdminClient(settings.kafka_config())
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    return int(client.describe_configs([resource])[resource].result()["retention.ms"].value) / DAY_MS


@pytest.mark.integration
def test_existing_topics_get_the_new_retention(settings: Settings) -> None:
    """Topics created with a longer retention (as all were, with 5 years) are brought down by `ensure_topics`."""
    assert broker_retention_days(settings, settings.topics.crossings) == settings.source_retention_days
    shorter = settings.model_copy(update={"source_retention_days": 3})
    assert ensure_topics(shorter) == []  # nothing created...
    for field in CLEAR:  # ...but the retention of every clear topic lowered
        assert broker_retention_days(settings, getattr(settings.topics, field)) == 3
    assert align_retention(admin_client(shorter), catalogue(shorter)) == []  # and a second run alters nothing


def test_a_bad_setting_is_one_line_not_a_traceback() -> None:
    env = {**os.environ, "SHEKARA_SOURCE_RETENTION_DAYS": "0"}
    done = subprocess.run([sys.executable, "-m", "harness.cli", "topics"], env=env, capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "bad setting SHEKARA_SOURCE_RETENTION_DAYS='0': Input should be greater than or equal to 1"
    ]
