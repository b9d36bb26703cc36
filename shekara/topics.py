"""The topic catalogue: every topic the project owns, with partitions and configs.

The three source topics are co-partitioned (same partition count, same traveller key) so one worker
sees all of a traveller's crossings, registrations and status changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from shekara.settings import Settings

DAY_MS = 24 * 3600 * 1000


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    partitions: int
    config: dict[str, str] = field(default_factory=dict)
    doc: str = ""


def catalogue(settings: Settings) -> list[TopicSpec]:
    t, n = settings.topics, settings.partitions
    # Sources keep 5 years: the retention of a stay with no exit (EES Art. 34 analogue in domain.md).
    source = {"cleanup.policy": "delete", "retention.ms": str(5 * 366 * DAY_MS)}
    return [
        TopicSpec(t.crossings, n, source, "Crossing events from checkpoints and airports, keyed by traveller"),
        TopicSpec(t.registrations, n, source, "Registration events from hotels, hosts and employers"),
        TopicSpec(t.status_changes, n, source, "Visa, permit, refugee, expulsion and lost-document events"),
        TopicSpec(t.stays, n, {"cleanup.policy": "compact"}, "Closed stays, keyed by stay id (latest revision)"),
        TopicSpec(t.alerts, n, {"cleanup.policy": "delete"}, "Alerts raised, resolved or retracted"),
        TopicSpec(t.dead_letter, n, {"cleanup.policy": "delete"}, "Rejected input with the reason"),
        TopicSpec(
            t.address_registrations,
            n,
            {"cleanup.policy": "delete"},
            "Registrations re-keyed by address, for the fictitious-address check",
        ),
    ]
