"""Container health checks for docker-compose.yml: ``python /app/deploy/healthcheck.py ROLE``, exit 0 when healthy.

Each check reads the same `shekara.settings.Settings` as the service it checks, so a check cannot pass against a
different broker, port or database than the one the service uses.

* processors: the worker's web server answers ``/api/alerts`` (the ops page, `streams.web`) on its web port;
* sink: ClickHouse answers as the writer (its DSN), and the sink's consumer group has a live member;
* simulator: the broker answers a metadata request;
* notify: the notifier's consumer group (`sinks.notify`) has a live member.
"""

from __future__ import annotations

import base64
import sys
import urllib.request
from typing import Any

from shekara.settings import Settings

TIMEOUT = 5.0


def processors(settings: Settings) -> None:
    f = settings.faust
    request = urllib.request.Request(f"http://127.0.0.1:{f.web_port}/api/alerts")
    if password := f.web_password.get_secret_value():  # the page's login (streams.web)
        token = base64.b64encode(f"{f.web_user}:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
        if response.status != 200:
            raise RuntimeError(f"{request.full_url} answered {response.status}")


def broker(settings: Settings) -> None:
    from confluent_kafka.admin import AdminClient

    AdminClient(settings.kafka_config()).list_topics(timeout=TIMEOUT)


def sink(settings: Settings) -> None:
    import clickhouse_connect

    dsn = settings.clickhouse_dsn
    options: dict[str, Any] = {} if dsn.startswith("chdb:") else {"connect_timeout": TIMEOUT}  # chdb: in-process
    client = clickhouse_connect.get_client(dsn=dsn, **options)
    try:
        client.command("SELECT 1")
    finally:
        client.close()
    live_member(settings, settings.sink.group_id)


def live_member(settings: Settings, group: str) -> None:
    """The consumer group `group` has a live member."""
    from confluent_kafka import ConsumerGroupState
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(settings.kafka_config())
    description = admin.describe_consumer_groups([group], request_timeout=TIMEOUT)[group].result(timeout=TIMEOUT)
    # Any state but EMPTY/DEAD/UNKNOWN means the group has a live member (the sink, or a replica of it).
    live = {
        ConsumerGroupState.STABLE,
        ConsumerGroupState.PREPARING_REBALANCING,
        ConsumerGroupState.COMPLETING_REBALANCING,
    }
    if description.state not in live:
        raise RuntimeError(f"consumer group {group} has no live member (state {description.state.name})")


def notify(settings: Settings) -> None:
    live_member(settings, settings.notify.group_id)


CHECKS = {"processors": processors, "sink": sink, "simulator": broker, "notify": notify}


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[1] not in CHECKS:
        print(f"usage: healthcheck.py {{{','.join(CHECKS)}}}", file=sys.stderr)
        return 2
    try:
        CHECKS[argv[1]](Settings())
    except Exception as exc:
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
