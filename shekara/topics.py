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
    # The source topics hold personal data in clear (document numbers, names, addresses); the warehouse holds it
    # pseudonymised and is the long-term record that the EES periods (3 and 5 years) apply to. So the sources
    # keep only what replay and late uploads need: `source_retention_days` (default 30, docs/warehouse.md). The
    # topics that copy source messages (address re-keying, dead letters with the rejected payload) keep no longer.
    clear = {"cleanup.policy": "delete", "retention.ms": str(settings.source_retention_days * DAY_MS)}
    return [
        TopicSpec(t.crossings, n, clear, "Crossing events from checkpoints and airports, keyed by traveller"),
        TopicSpec(t.registrations, n, clear, "Registration events from hotels, hosts and employers"),
        TopicSpec(t.status_changes, n, clear, "Visa, permit, refugee, expulsion and lost-document events"),
        TopicSpec(t.stays, n, {"cleanup.policy": "compact"}, "Closed stays, keyed by stay id (latest revision)"),
        TopicSpec(t.alerts, n, {"cleanup.policy": "delete"}, "Alerts raised, resolved or retracted"),
        TopicSpec(t.dead_letter, n, clear, "Rejected input with the reason"),
        # Every ops page reads it whole into memory at start: compaction keeps one record per alert.
        TopicSpec(t.alert_actions, n, {"cleanup.policy": "compact"}, "Triage state of alerts, keyed by alert id"),
        TopicSpec(
            t.address_registrations,
            n,
            clear,
            "Registrations re-keyed by address, for the fictitious-address check",
        ),
        # Co-partitioned with the sources (keyed by the new document's partition key); carries a traveller's state.
        TopicSpec(t.identity_links, n, clear, "A renewed document's traveller state handed to its new key"),
    ]
