"""Kafka users, topics and ACLs for docker-compose.yml: ``python /app/deploy/kafka_acls.py``, run once by the
``kafka-init`` service as the broker's super user (``SHEKARA_KAFKA__USERNAME=admin``).

1. Each service's SCRAM-SHA-512 credential is set from the environment (``KAFKA_<USER>_PASSWORD``): running it
   again after a password change rotates it.
2. The project's topics are created (as `shekara topics` does): no service but this one may create them.
3. The ACLs of these users become exactly `grants()`: missing ones are added, any other ACL of theirs removed.
   The broker denies what no ACL allows (``allow.everyone.if.no.acl.found=false``).

Who may do what (analysts have no Kafka user at all; they read ClickHouse):

* ``producer`` (integrators' systems, ``shekara publish``, the simulator): WRITE the three source topics, and
  the dead-letter topic, where ``shekara publish`` reports the lines it refused (stage ``publish``, coordinates of
  the letter itself): a sender's refused input is then visible to operations, as the processors' refusals are.
* ``processors``: READ the sources, the re-keyed registrations and the alerts (the ops page); WRITE alerts, stays,
  dead letters and re-keyed registrations; READ and WRITE the alert-actions topic (officers' triage on the page);
  its own internal topics (changelogs, ``<app id>-…``) and group.
* ``sink``: READ every topic it lands; WRITE dead letters; its group, and the notifier's (``shekara notify``, a
  sink of alerts to a webhook, runs as this user).
* ``schema-registry``: its ``_schemas`` topic and group.
* ``rest-proxy`` (Confluent REST Proxy, for integrators without a Kafka client): WRITE the three source topics.
  Its HTTP callers all act as this one user, so it gets less than ``producer``: no dead-letter topic.

Exit 0 when done, 1 with one line on any failure (the service is restarted on failure).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Any

from shekara.settings import Settings

PROCESSORS_APP_ID = "shekara-processor"  # streams.app.DEFAULT_APP_ID: Faust's group and internal-topic prefix
REGISTRY_TOPIC = "_schemas"
REGISTRY_GROUP = "schema-registry"
SCRAM_ITERATIONS = 8192
# Kafka user -> the compose variable holding its password.
USERS = {
    "producer": "KAFKA_PRODUCER_PASSWORD",
    "processors": "KAFKA_PROCESSORS_PASSWORD",
    "sink": "KAFKA_SINK_PASSWORD",
    "schema-registry": "KAFKA_REGISTRY_PASSWORD",
    "rest-proxy": "KAFKA_REST_PROXY_PASSWORD",
}
TIMEOUT = 30.0


@dataclass(frozen=True, slots=True)
class Grant:
    """One allowed operation of a user on a topic or group (by exact name, or by name prefix)."""

    user: str
    resource: str  # "topic" or "group"
    name: str
    operation: str  # READ, WRITE, DESCRIBE, CREATE, DESCRIBE_CONFIGS
    prefixed: bool = False


def _allow(
    user: str, resource: str, names: list[str], operations: tuple[str, ...], prefixed: bool = False
) -> list[Grant]:
    return [Grant(user, resource, n, op, prefixed) for n in names for op in operations]


def grants(settings: Settings, processors_app_id: str = PROCESSORS_APP_ID) -> list[Grant]:
    """Every ACL of the project's Kafka users; anything else is denied."""
    t = settings.topics
    sources = [t.crossings, t.registrations, t.status_changes]
    read, write = ("READ", "DESCRIBE"), ("WRITE", "DESCRIBE")
    internal = ("READ", "WRITE", "CREATE", "DESCRIBE", "DESCRIBE_CONFIGS")
    every = [
        *_allow("producer", "topic", [*sources, t.dead_letter], write),
        *_allow("processors", "topic", [*sources, t.address_registrations, t.alerts, t.alert_actions], read),
        *_allow("processors", "topic", [t.alerts, t.stays, t.dead_letter, t.address_registrations], write),
        *_allow("processors", "topic", [t.identity_links], ("READ", "WRITE", "DESCRIBE")),  # renewals' handoffs
        *_allow("processors", "topic", [t.alert_actions], write),  # officers' triage from the ops page
        *_allow("processors", "topic", [f"{processors_app_id}-"], internal, prefixed=True),
        *_allow("processors", "group", [processors_app_id], read),
        *_allow("sink", "topic", [*sources, t.alerts, t.stays, t.dead_letter, t.alert_actions], read),
        *_allow("sink", "topic", [t.dead_letter], write),
        *_allow("sink", "group", [settings.sink.group_id, settings.notify.group_id], read),  # notify: a sink too
        *_allow("schema-registry", "topic", [REGISTRY_TOPIC], internal),
        *_allow("schema-registry", "group", [REGISTRY_GROUP], read, prefixed=True),
        *_allow("rest-proxy", "topic", sources, write),  # integrators over HTTP: the source topics only
    ]
    return list(dict.fromkeys(every))  # DESCRIBE comes with both READ and WRITE: once


def acl_binding(grant: Grant) -> Any:
    """The confluent-kafka AclBinding of a grant (ALLOW, from any host)."""
    from confluent_kafka.admin import AclBinding, AclOperation, AclPermissionType, ResourcePatternType, ResourceType

    return AclBinding(
        ResourceType[grant.resource.upper()],
        grant.name,
        ResourcePatternType.PREFIXED if grant.prefixed else ResourcePatternType.LITERAL,
        f"User:{grant.user}",
        "*",
        AclOperation[grant.operation],
        AclPermissionType.ALLOW,
    )


def passwords(env: dict[str, str]) -> dict[str, str]:
    """Each user's password from the environment; ValueError naming the first one missing."""
    out = {}
    for user, variable in USERS.items():
        if not env.get(variable, "").strip():
            raise ValueError(f"{variable} is not set (the password of Kafka user {user})")
        out[user] = env[variable]
    return out


def apply(settings: Settings, users: dict[str, str]) -> tuple[int, int]:
    """Set the credentials, create the topics, reconcile the ACLs: (ACLs added or kept, ACLs removed)."""
    from confluent_kafka.admin import (
        AclBindingFilter,
        AclOperation,
        AclPermissionType,
        AdminClient,
        ResourcePatternType,
        ResourceType,
        ScramCredentialInfo,
        ScramMechanism,
        UserScramCredentialAlteration,
        UserScramCredentialUpsertion,
    )

    from shekara.admin import ensure_topics, wait_for_broker

    wait_for_broker(settings, timeout=TIMEOUT)
    admin = AdminClient(settings.kafka_config())
    info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, SCRAM_ITERATIONS)
    upserts: list[UserScramCredentialAlteration] = [
        UserScramCredentialUpsertion(user, info, password.encode()) for user, password in users.items()
    ]
    for future in admin.alter_user_scram_credentials(upserts, request_timeout=TIMEOUT).values():
        future.result()
    ensure_topics(settings)

    wanted = {acl_binding(g) for g in grants(settings)}
    existing = set()
    for user in users:
        any_name: Any = None  # None matches any resource name and any host
        everything = AclBindingFilter(
            ResourceType.ANY,
            any_name,
            ResourcePatternType.ANY,
            f"User:{user}",
            any_name,
            AclOperation.ANY,
            AclPermissionType.ANY,
        )
        existing.update(admin.describe_acls(everything, request_timeout=TIMEOUT).result())
    stale = [
        AclBindingFilter(
            b.restype, b.name, b.resource_pattern_type, b.principal, b.host, b.operation, b.permission_type
        )
        for b in existing - wanted
    ]
    if stale:
        for future in admin.delete_acls(stale, request_timeout=TIMEOUT).values():
            future.result()
    for future in admin.create_acls(sorted(wanted), request_timeout=TIMEOUT).values():
        future.result()
    return len(wanted), len(stale)


def main() -> int:
    try:
        users = passwords(dict(os.environ))
        kept, removed = apply(Settings(), users)
    except Exception as exc:
        print(f"kafka-init: {exc}", file=sys.stderr)
        return 1
    print(f"kafka-init: {len(users)} users, {kept} ACLs in place, {removed} stale ACLs removed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
