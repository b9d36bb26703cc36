"""The processors' Faust app: one factory, configured entirely from `Settings`.

Embedded and server mode differ only in settings: the store (``memory://`` with the embedded Tansu broker,
``rocksdb://`` in server mode, under ``settings.data_dir``) and the consumer-group timings.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import faust

from shekara.logs import get_logger
from shekara.settings import FaustSettings, Settings
from streams.engine import consumer_url
from streams.topology import Topology, build_topology, fatal_exit

log = get_logger(__name__)

DEFAULT_APP_ID = FaustSettings().app_id  # deploy/kafka_acls.py grants this one
MAX_POLL_RECORDS = 1000


def app_config(settings: Settings, app_id: str, *, web_port: int | None = None) -> dict[str, Any]:
    """Faust settings for a processor app (`faust.App(app_id, **app_config(...))`)."""
    from streams.web import web_config

    fs = settings.faust
    persistent = not fs.store.startswith("memory:")
    return {
        "broker": settings.broker_url,
        # The consumer through streams.engine: Faust's aiokafka driver with the fetch wait from settings.
        "broker_consumer": consumer_url(settings),
        "store": fs.store,
        "topic_partitions": settings.partitions,
        "topic_replication_factor": 1,
        "datadir": str(Path(settings.data_dir) / "faust" / app_id),
        "broker_session_timeout": fs.session_timeout,
        "broker_rebalance_timeout": fs.rebalance_timeout,
        "broker_heartbeat_interval": fs.heartbeat_interval,
        "broker_max_poll_interval": fs.processor_max_poll_interval,
        "broker_commit_interval": fs.commit_interval,
        "consumer_auto_offset_reset": "earliest",
        # Bound each fetch: aiokafka counts the consumer idle from its last fetch, and one unbounded fetch of a
        # large backlog takes Faust longer than `max_poll_interval` to hand out, so the worker left the group
        # and, being "idle", never rejoined.
        "broker_max_poll_records": MAX_POLL_RECORDS,
        # A standby copy only helps when state survives on disk; with the memory store it doubles memory for nothing.
        "table_standby_replicas": 1 if persistent else 0,
        # Bind address, login and Faust's built-in views (off): the ops page's rules, in one place.
        **web_config(settings, web_port=web_port),
        "broker_credentials": settings.kafka.faust_credentials(),
        "producer_acks": -1,
        "autodiscover": False,
    }


def new_app(settings: Settings, app_id: str, *, web_port: int | None = None) -> faust.App:
    """A bare Faust app with the processors' configuration (its data directory created)."""
    config = app_config(settings, app_id, web_port=web_port)
    Path(config["datadir"]).parent.mkdir(parents=True, exist_ok=True)
    return faust.App(app_id, **config)


def create_app(
    settings: Settings,
    *,
    app_id: str | None = None,
    web_port: int | None = None,
    status_file: Path | None = None,
    on_fatal: Callable[[BaseException], None] = fatal_exit,
) -> tuple[faust.App, Topology]:
    """A processor app with the whole topology declared, ready for `faust.Worker(app).execute_from_commandline()`.

    `app_id`: by default `settings.faust.app_id`."""
    app_id = app_id or settings.faust.app_id
    app = new_app(settings, app_id, web_port=web_port)
    topology = build_topology(app, settings, status_file=status_file, on_fatal=on_fatal)
    if settings.faust.web_enabled:
        try:
            from streams import web

            web.install(app, settings)  # type: ignore[attr-defined,unused-ignore]
        except (ImportError, AttributeError) as exc:
            log.warning("ops web views not available", error=str(exc))
    return app, topology
