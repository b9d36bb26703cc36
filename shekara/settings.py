"""One typed settings object for every process, read from the environment and a TOML file.

Precedence (highest first): constructor arguments, environment variables (``SHEKARA_*``, nested with
``__``), the TOML file named by ``SHEKARA_CONFIG`` (default ``./shekara.toml`` if present), defaults.
Embedded and server mode differ only here; the code path is the same.
"""

from __future__ import annotations

import ipaddress
import logging
import os
from datetime import date
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

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
    # Compacted, keyed by alert id: each alert's latest triage state (ack, assignee, notes; streams/triage.py).
    alert_actions: str = "shekara.alert-actions"
    # Internal, co-partitioned with the sources: a renewed document's state handed to its new key (streams/handoff.py).
    identity_links: str = "shekara.identity-links"


class FaustSettings(BaseModel):
    """Consumer-group timing. Tansu makes a join wait for the rebalance timeout, so keep these low there."""

    # Faust's app id: the processors' consumer group and the prefix of their changelog topics. Two deployments (or
    # two tests) on one broker need two ids, or they share groups and state.
    app_id: str = "shekara-processor"
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
    # The ops page shows alerts about people: loopback only unless a login is set (`check_secrets`).
    web_bind: str = "127.0.0.1"
    web_user: str = "ops"
    web_password: SecretStr = SecretStr("")  # set: every request needs it (HTTP Basic); server mode: required
    store: str = "memory://"  # server mode: "rocksdb://"
    batch_size: int = 5000
    # Batches are adaptive (streams.drain): a free processor takes what is buffered at once. This is how long a
    # batch started on an empty buffer waits for company (0: not at all); a busy processor's batches fill anyway.
    batch_within: float = 0.0
    # How long the processors' consumer lets the broker hold a fetch that finds nothing new (streams.engine).
    # None: by mode; embedded Tansu answers only when the wait is over, so there it is short.
    fetch_max_wait_ms: int | None = Field(default=None, ge=1, le=30_000)
    # Decode, validate and step in a child process (streams.offload): a worker then uses two cores. Off for one core.
    matching_process: bool = True
    # Tests only: SIGKILL the worker right after a batch's dead letters are acknowledged, before its commit
    # (tests/streams/test_letters_once.py: the replacement must not send them again).
    kill_after_dead_letters: bool = False


class SinkSettings(BaseModel):
    """The ClickHouse sink (`sinks/`): batching, retry back-off, the analysts' query endpoint."""

    group_id: str = "shekara-sink"
    database: str = "shekara"
    batch_size: int = 100_000  # messages per batch, at most
    flush_interval: float = 1.0  # seconds a partial batch may wait before it is written
    retry_backoff: float = 0.2  # first wait after a failed insert; doubles up to retry_backoff_max
    retry_backoff_max: float = 30.0
    query_port: int = 0  # read-only query endpoint of the process owning the chDB directory; 0 = any free port
    # Its address: BI tools on another host need more than loopback, and then the analyst password (`check_secrets`).
    query_bind: str = "127.0.0.1"
    analyst_password: SecretStr = SecretStr("")  # server mode: password of `clickhouse_analyst_user`
    # Seconds between the sink's marks of overstayed exits for 5-year retention (sinks.retention); 0: never.
    overstay_sweep_interval: float = 3600.0
    # Limits of every analyst query (embedded: the readonly session; server: the same values in the analyst
    # profile, deploy/clickhouse/users.d/shekara.xml). A query over a limit fails with ClickHouse's error.
    analyst_max_execution_time: int = 120  # seconds
    analyst_max_memory_usage: int = 4_000_000_000  # bytes per query
    analyst_max_result_rows: int = 10_000_000
    analyst_max_result_bytes: int = 1_000_000_000


class MetricsSettings(BaseModel):
    """Prometheus /metrics (`shekara.metrics`). The processors and the ops page serve it on their web port (with
    the page's login); the sink and the publish client on a port of their own, bound like the page (loopback)."""

    bind: str = "127.0.0.1"  # beyond loopback only with a password (`check_secrets`)
    # Basic login (user "metrics") of the sink's and the publish client's listeners; required beyond loopback.
    password: SecretStr = SecretStr("")
    sink_port: int = Field(default=9464, ge=0, le=65535)  # 0: the sink serves no metrics
    publish_port: int = Field(default=0, ge=0, le=65535)  # `shekara publish` while it runs; 0: none
    notify_port: int = Field(default=9465, ge=0, le=65535)  # `shekara notify` (not with --once); 0: none


class KafkaSecurity(BaseModel):
    """How this process's Kafka clients authenticate; each service has its own user (deploy/kafka_acls.py).

    PLAINTEXT for the embedded broker; server mode needs SASL (`check_secrets`). `Settings.kafka_config` and
    `KafkaSecurity.faust_credentials` are the only places that turn these into client configuration.
    """

    security_protocol: Literal["PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] = "SCRAM-SHA-512"
    username: str = ""
    password: SecretStr = SecretStr("")
    ssl_cafile: Path | None = None  # SASL_SSL: the CA that signed the broker's certificate (default: system CAs)

    @property
    def sasl(self) -> bool:
        return self.security_protocol.startswith("SASL_")

    def librdkafka(self) -> dict[str, str]:
        """The security part of a confluent-kafka (librdkafka) client configuration."""
        if not self.sasl:
            return {}
        config = {
            "security.protocol": self.security_protocol,
            "sasl.mechanism": self.sasl_mechanism,
            "sasl.username": self.username,
            "sasl.password": self.password.get_secret_value(),
        }
        if self.ssl_cafile is not None:
            config["ssl.ca.location"] = str(self.ssl_cafile)
        return config

    def faust_credentials(self) -> Any:
        """Faust's ``broker_credentials`` (aiokafka): a `faust.SASLCredentials`, or None for PLAINTEXT."""
        if not self.sasl:
            return None
        import ssl

        import faust

        context = None
        if self.security_protocol == "SASL_SSL":
            context = ssl.create_default_context(cafile=str(self.ssl_cafile) if self.ssl_cafile else None)
        return faust.SASLCredentials(
            username=self.username,
            password=self.password.get_secret_value(),
            mechanism=self.sasl_mechanism,
            ssl_context=context,
        )


class Limits(BaseModel):
    """Sizes a message or an input line may have; checked before sending, each refusal naming the field."""

    # Under the 1 MB message limit of librdkafka and Kafka (message.max.bytes), with room for key and framing.
    max_value_bytes: int = 900_000
    # `shekara publish`: a longer line is reported and skipped without being read into memory (JSON escapes
    # may take 6 bytes per character, so a line of a sendable event stays well under this).
    max_line_bytes: int = 4 * 1024 * 1024
    # What the processors (streams.intake, schemas.validation) and the sink (its rejects SQL) accept; the rest
    # is dead-lettered naming the field. A source message's value is held to `max_value_bytes` too, and so is
    # every record the processors send (alert, stay, state): a larger one dead-letters the input that made it.
    max_key_bytes: int = 256  # a partition key is 32 hex digits
    max_id_chars: int = 128  # identifiers: event, record, checkpoint, registration, host, permit, card, reference…
    max_text_chars: int = 1_000  # free text: address, authority, source system
    # Every date and time in an event (its UTC day): the rules' date arithmetic stays far from year 9999.
    earliest_date: date = date(1900, 1, 1)
    latest_date: date = date(2200, 12, 31)
    # A dead letter carries at most this many bytes of the rejected message's key and value (the first ones);
    # the whole message stays in its source topic at the dead letter's source partition and offset.
    dead_letter_payload_bytes: int = 65_536
    # Triage (streams/triage.py): an officer's note, and a name (assignee, author) on an alert's triage record.
    max_note_chars: int = 2_000
    max_name_chars: int = 64


class NotifySettings(BaseModel):
    """`shekara notify`: CRITICAL/HIGH alerts to an Alertmanager-style webhook (sinks/notify.py); off without a URL."""

    webhook_url: str | None = None
    receiver: str = "shekara-ops"  # the payload's `receiver` (Alertmanager: the receiver's name)
    external_url: str = "http://127.0.0.1:6066/"  # the ops page: `externalURL` and each alert's `generatorURL`
    severities: list[str] = Field(default_factory=lambda: ["CRITICAL", "HIGH"])
    group_id: str = "shekara-notify"
    attempts: int = Field(default=5, ge=1)  # deliveries tried before the alert goes to the dead letters
    backoff: float = Field(default=0.5, gt=0)  # first wait between attempts; doubles up to backoff_max
    backoff_max: float = Field(default=30.0, gt=0)
    timeout: float = Field(default=5.0, gt=0)  # seconds per request


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
    # The checkpoint catalogue, enforced at publish, in the processors and in the sink (shekara.reference).
    checkpoints_file: Path = REPO_ROOT / "rules" / "checkpoints.csv"
    log_level: str = "WARNING"
    log_format: str = "console"  # or "json"
    # How long a command waits for the broker or the warehouse to answer before saying, in one line, it cannot.
    reach_timeout_seconds: float = Field(default=10.0, gt=0)
    allowed_lateness_seconds: int = 6 * 3600
    max_future_skew_seconds: int = 300
    # Days the source topics keep events, in clear, for replay and late uploads; the pseudonymised warehouse is
    # the long-term record (docs/warehouse.md, "Retention"). `shekara topics` sets it on new and existing topics.
    source_retention_days: int = Field(default=30, ge=1, le=5 * 366)
    topics: TopicNames = Field(default_factory=TopicNames)
    faust: FaustSettings = Field(default_factory=FaustSettings)
    sink: SinkSettings = Field(default_factory=SinkSettings)
    kafka: KafkaSecurity = Field(default_factory=KafkaSecurity)
    limits: Limits = Field(default_factory=Limits)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    notify: NotifySettings = Field(default_factory=NotifySettings)

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

    def kafka_config(self) -> dict[str, Any]:
        """The base of every confluent-kafka client's configuration: the broker and this process's credentials.

        librdkafka's own lines go through the project's logging (`shekara.kafka`), throttled; quiet unless
        SHEKARA_LOG_LEVEL asks for INFO or DEBUG (then its warnings and above; at DEBUG everything).
        """
        from shekara.broker_watch import client_logger  # imports this module

        logger = client_logger("shekara.kafka")
        wanted = self.log_level.upper()
        logger.setLevel({"DEBUG": logging.DEBUG, "INFO": logging.WARNING}.get(wanted, logging.CRITICAL + 1))
        return {"bootstrap.servers": self.bootstrap_servers, **self.kafka.librdkafka(), "logger": logger}

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


# --- server mode refuses weak secrets ---------------------------------------------------------------------

DEVELOPMENT_PSEUDONYM_KEY = "shekara-development-key-change-me"
MIN_PSEUDONYM_KEY_BYTES = 32
# Every value in deploy/env.example (tests/shekara/test_settings_secrets.py keeps the two in step): the image does not
# ship that file, and a copied example must not pass as a secret.
PLACEHOLDER_SECRETS = frozenset(
    {
        "change-me-to-a-long-random-secret",
        "change-me-writer",
        "change-me-analyst",
        "change-me-ops",
        "change-me-kafka-admin",
        "change-me-kafka-producer",
        "change-me-kafka-processors",
        "change-me-kafka-sink",
        "change-me-kafka-registry",
        "change-me-kafka-rest-proxy",
        "change-me-rest-proxy",
        "change-me-metrics",
        "change-me-grafana",
    }
)


def _weakness(value: str) -> str | None:
    """Why a password or key is not a secret, or None."""
    if not value.strip():
        return "is empty"
    if value in PLACEHOLDER_SECRETS or "change-me" in value.lower() or "changeme" in value.lower():
        return "is a placeholder (deploy/env.example)"
    return None


def is_loopback(host: str) -> bool:
    """Whether a bind address only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name may resolve to anything


def host_is_loopback(host: str) -> bool:
    """Whether a ``Host`` header names this machine's loopback (``localhost``, 127.x, ``[::1]``; any port).

    A page without a login binds loopback only, yet a web site can still reach it through the officer's
    browser by DNS rebinding: its own name, re-resolved to 127.0.0.1, makes its script same-origin with the
    page (open alerts, traveller histories, triage) or a metrics endpoint. Such a request carries the site's name
    as Host.
    """
    name = host.strip().lower()
    if name.startswith("["):  # [::1]:port
        name = name[1 : name.find("]")] if "]" in name else name
    elif name.count(":") == 1:
        name = name.rsplit(":", 1)[0]
    # Browsers resolve *.localhost to loopback themselves (RFC 6761), so no site can rebind such a name.
    return is_loopback(name) or name.endswith(".localhost")


def check_secrets(
    settings: Settings,
    *,
    pseudonym: bool = True,
    clickhouse: bool = True,
    kafka: bool = True,
    ops_page: bool = True,
    metrics: bool = False,
) -> list[str]:
    """One line per weak secret, naming its setting; empty when the process may start.

    Server mode refuses the development pseudonym key, env.example placeholders, keys shorter than 32 bytes,
    empty or placeholder ClickHouse, Kafka and ops-page passwords, and Kafka without SASL. In any mode the ops
    page may bind beyond loopback only with a password, and so may a process's own /metrics listener (`metrics`:
    the sink, the notifier, a publish client with a metrics port). A command checks only the secrets it uses.
    """
    problems: list[str] = []
    server = settings.mode is Mode.SERVER
    if server and pseudonym:
        key = settings.pseudonym_key.get_secret_value()
        if key == DEVELOPMENT_PSEUDONYM_KEY:
            problems.append("SHEKARA_PSEUDONYM_KEY is the built-in development key: set a random secret of 32+ bytes")
        elif weak := _weakness(key):
            problems.append(f"SHEKARA_PSEUDONYM_KEY {weak}: set a random secret of 32+ bytes")
        elif len(key.encode()) < MIN_PSEUDONYM_KEY_BYTES:
            problems.append(
                f"SHEKARA_PSEUDONYM_KEY is {len(key.encode())} bytes: server mode needs {MIN_PSEUDONYM_KEY_BYTES}+"
            )
    if server and clickhouse:
        dsn = urlsplit(settings.clickhouse_dsn)
        if dsn.scheme in ("http", "https") and (weak := _weakness(dsn.password or "")):
            problems.append(f"the password in SHEKARA_CLICKHOUSE_DSN (the writer) {weak}")
        if weak := _weakness(settings.sink.analyst_password.get_secret_value()):
            problems.append(f"SHEKARA_SINK__ANALYST_PASSWORD {weak}")
    if server and kafka:
        k = settings.kafka
        if not k.sasl:
            problems.append(f"SHEKARA_KAFKA__SECURITY_PROTOCOL is {k.security_protocol}: server mode needs SASL")
        else:
            if not k.username.strip():
                problems.append("SHEKARA_KAFKA__USERNAME is empty: each service has its own Kafka user")
            if weak := _weakness(k.password.get_secret_value()):
                problems.append(f"SHEKARA_KAFKA__PASSWORD {weak}")
    query_bind, analyst = settings.sink.query_bind, settings.sink.analyst_password.get_secret_value()
    if clickhouse and not is_loopback(query_bind) and (weak := _weakness(analyst)):
        problems.append(
            f"SHEKARA_SINK__ANALYST_PASSWORD {weak}: the query endpoint binds "
            f"SHEKARA_SINK__QUERY_BIND={query_bind} (not loopback)"
        )
    f = settings.faust
    needs_login = ops_page and f.web_enabled and (server or not is_loopback(f.web_bind))
    if needs_login and (weak := _weakness(f.web_password.get_secret_value())):
        where = "server mode" if server else f"SHEKARA_FAUST__WEB_BIND={f.web_bind} (not loopback)"
        problems.append(f"SHEKARA_FAUST__WEB_PASSWORD {weak}: the ops page needs a login in {where}")
    m = settings.metrics
    if metrics and not is_loopback(m.bind) and (weak := _weakness(m.password.get_secret_value())):
        problems.append(
            f"SHEKARA_METRICS__PASSWORD {weak}: /metrics needs a login when "
            f"SHEKARA_METRICS__BIND={m.bind} (not loopback)"
        )
    return problems


def refuse_weak_secrets(settings: Settings, **uses: bool) -> None:
    """Exit 2 with one line per problem of `check_secrets` (the keywords say which secrets the command uses)."""
    import sys

    problems = check_secrets(settings, **uses)
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    if problems:
        raise SystemExit(2)


def dump_with_secrets(model: BaseModel) -> dict[str, Any]:
    """``model_dump(mode="json")`` with every SecretStr in clear: only to hand settings to a child process."""
    data = model.model_dump(mode="json")
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, SecretStr):
            data[name] = value.get_secret_value()
        elif isinstance(value, BaseModel):
            data[name] = dump_with_secrets(value)
    return data
