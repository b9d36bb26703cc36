"""One typed settings object for every process, read from the environment and a TOML file.

Precedence (highest first): constructor arguments, environment variables (``SHEKARA_*``, nested with
``__``), the TOML file named by ``SHEKARA_CONFIG`` (default ``./shekara.toml`` if present), defaults.
Embedded and server mode differ only here; the code path is the same.
"""

from __future__ import annotations

import os
from enum import StrEnum
from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

REPO_ROOT = Path(__file__).resolve().parent.parent


class Mode(StrEnum):
    EMBEDDED = "embedded"
    SERVER = "server"


class TopicNames(BaseModel):
    """Names of the project's topics; the catalogue with partitions and configs is in `shekara.topics`."""

    crossings: str = "shekara.crossings"
    registrations: str = "shekara.registrations"
    status_changes: str = "shekara.status-changes"
    stays: str = "shekara.stays"
    alerts: str = "shekara.alerts"
    dead_letter: str = "shekara.dead-letter"
    address_registrations: str = "shekara.address-registrations"


class FaustSettings(BaseModel):
    """Consumer-group timing. Tansu makes a join wait for the rebalance timeout, so keep these low there."""

    session_timeout: float = 6.0
    rebalance_timeout: float = 7.0
    heartbeat_interval: float = 1.0
    max_poll_interval: float = 7.0  # librdkafka clients (the sink): also their rebalance timeout, so low here
    # The processors (aiokafka) leave the group when Faust's fetcher has not polled for this long. It stops
    # polling while its producer buffer drains (ops page tables) or agents lag: on a loaded 2-core machine that
    # passed 7 s and the worker fell out for good. aiokafka joins with `rebalance_timeout`, so this costs no wait.
    processor_max_poll_interval: float = 60.0
    commit_interval: float = 1.0
    web_port: int = 6066
    web_enabled: bool = True
    store: str = "memory://"  # server mode: "rocksdb://"
    batch_size: int = 5000
    batch_within: float = 1.0
    # Decode, validate and step in a child process (streams.offload): a worker then uses two cores. Off for one core.
    matching_process: bool = True


class SinkSettings(BaseModel):
    """The ClickHouse sink (`sinks/`): batching, retry back-off, the analysts' query endpoint."""

    group_id: str = "shekara-sink"
    database: str = "shekara"
    batch_size: int = 100_000  # messages per batch, at most
    flush_interval: float = 1.0  # seconds a partial batch may wait before it is written
    retry_backoff: float = 0.2  # first wait after a failed insert; doubles up to retry_backoff_max
    retry_backoff_max: float = 30.0
    query_port: int = 0  # read-only query endpoint of the process owning the chDB directory; 0 = any free port
    analyst_password: SecretStr = SecretStr("")  # server mode: password of `clickhouse_analyst_user`


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SHEKARA_",
        env_nested_delimiter="__",
        extra="ignore",
    )

    mode: Mode = Mode.EMBEDDED
    broker_url: str = "kafka://127.0.0.1:19092"
    schema_registry_url: str | None = None
    clickhouse_dsn: str = f"chdb://{REPO_ROOT / 'var' / 'clickhouse'}"
    # Analysts connect with this user in server mode; it is read-only (see docker-compose.yml).
    clickhouse_analyst_user: str = "analyst"
    data_dir: Path = REPO_ROOT / "var"
    partitions: int = 8
    # Keyed hash for document numbers: never reaches analytics tables in clear. Change in production.
    pseudonym_key: SecretStr = SecretStr("shekara-development-key-change-me")
    rules_file: Path = REPO_ROOT / "rules" / "kz.toml"
    log_level: str = "WARNING"
    log_format: str = "console"  # or "json"
    allowed_lateness_seconds: int = 6 * 3600
    max_future_skew_seconds: int = 300
    topics: TopicNames = Field(default_factory=TopicNames)
    faust: FaustSettings = Field(default_factory=FaustSettings)
    sink: SinkSettings = Field(default_factory=SinkSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_path = Path(os.environ.get("SHEKARA_CONFIG", "shekara.toml"))
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if toml_path.is_file():
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_path))
        return tuple(sources)

    @property
    def bootstrap_servers(self) -> str:
        """Broker address for confluent-kafka (Faust's URL without its ``kafka://`` scheme)."""
        return ",".join(u.split("://", 1)[-1] for u in self.broker_url.split(";"))

    @property
    def spool_dir(self) -> Path:
        return self.data_dir / "spool"

    @property
    def pseudonym_key_bytes(self) -> bytes:
        return self.pseudonym_key.get_secret_value().encode()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (tests build their own `Settings(...)` instead)."""
    return Settings()
