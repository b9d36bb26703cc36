"""`shekara dead-letters`: what was rejected, by whom and why, read from the `dead_letters` table.

Read-only, through the analysts' path (`sinks.analyst`), so it works while the sink runs. The table holds one
row per rejected source message and stage (migration 009); it never holds a payload or a key.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from schemas.records import DeadLetter
from shekara.settings import Settings
from sinks.analyst import Reader, Table

# Reasons differ in their numbers ("is 3601 s in the future", "bad magic byte 0x7b"): the summary groups them
# with every number (decimal or hex) masked as #.
SUMMARY_SQL = r"""
SELECT
    stage,
    source_topic AS topic,
    ifNull(field, '') AS field,
    replaceRegexpAll(reason, '\\b(0x)?[0-9a-f]*[0-9][0-9a-f]*\\b', '#') AS reason,
    count() AS messages,
    max(rejected_time) AS latest
FROM dead_letters FINAL
GROUP BY stage, topic, field, reason
ORDER BY messages DESC, stage, topic, reason
LIMIT {top:UInt32}
"""

_COLUMNS = (
    "rejected_time, stage, source_topic AS topic, source_partition AS partition, source_offset AS offset,"
    " ifNull(field, '') AS field, reason"
)
LATEST_SQL = f"""
SELECT {_COLUMNS}
FROM dead_letters FINAL
ORDER BY rejected_time DESC, letter_id
LIMIT {{n:UInt32}}
"""
# Rows that landed after a given time, oldest first: what --follow prints as it arrives.
SINCE_SQL = f"""
SELECT {_COLUMNS}, toString(ingested_time) AS landed
FROM dead_letters
WHERE ingested_time > parseDateTime64BestEffort({{since:String}}, 3, 'UTC')
ORDER BY ingested_time, letter_id
LIMIT 10000
"""
# Rows, and distinct source messages (by coordinates, whatever the stage; a letter without them on its own).
TOTALS_SQL = """
SELECT
    count(),
    uniqExact(source_topic, if(source_offset IS NULL, letter_id, toString((source_partition, source_offset))))
FROM dead_letters
"""


@dataclass(frozen=True)
class Tally:
    """Dead letters on the topic, counted by the source message each one names."""

    records: int
    messages: int  # distinct source messages (a letter with no source coordinates counts on its own)

    @property
    def twice(self) -> int:
        """Dead letters beyond the first of their source message: 0 when each was dead-lettered once."""
        return self.records - self.messages

    def line(self) -> str:
        return f"{self.records:,} dead letters, {self.messages:,} source messages, dead-lettered twice: {self.twice:,}"


def tally(letters: Iterable[DeadLetter]) -> Tally:
    """Count `letters` by source coordinates (topic, partition, offset), whatever their stage."""
    records, unplaced = 0, 0
    sources: set[tuple[str, int, int]] = set()
    for d in letters:
        records += 1
        if d.source_partition is None or d.source_offset is None:
            unplaced += 1  # rejected before it reached Kafka (`shekara publish`): nothing to compare it with
        else:
            sources.add((d.source_topic, d.source_partition, d.source_offset))
    return Tally(records, len(sources) + unplaced)


def summary(settings: Settings, top: int = 50) -> bytes:
    """Dead letters by stage, topic, field and reason (most frequent first), as a printable table."""
    with Reader(settings) as reader:
        return reader.raw(SUMMARY_SQL, "pretty", {"top": top})


def latest(settings: Settings, n: int) -> bytes:
    """The `n` most recent dead letters, newest first, as a printable table."""
    with Reader(settings) as reader:
        return reader.raw(LATEST_SQL, "pretty", {"n": n})


def totals(settings: Settings) -> tuple[int, int]:
    """(rows, distinct rejected messages) in `dead_letters`: equal unless a dead letter was landed twice."""
    with Reader(settings) as reader:
        rows, distinct = reader.table(TOTALS_SQL).rows[0]
    return int(rows), int(distinct)


def follow(
    settings: Settings, *, every: float = 2.0, stop: Callable[[], bool] = lambda: False
) -> Iterator[dict[str, Any]]:
    """Dead letters as they land, oldest first, from now on; until `stop()` is true.

    A reader per poll: held open between polls, an embedded warehouse's directory would stay locked and a
    sink starting meanwhile could not open it.
    """
    with Reader(settings) as reader:
        since = str(reader.table("SELECT toString(now64(3, 'UTC'))").rows[0][0])
    while not stop():
        with Reader(settings) as reader:
            table: Table = reader.table(SINCE_SQL, {"since": since})
        for row in table.records():
            since = str(row.pop("landed"))
            yield row
        if not table.rows:
            time.sleep(every)


def line(row: dict[str, Any]) -> str:
    """One dead letter as one line (for --follow)."""
    where = f"{row['topic']}[{row['partition']}]@{row['offset']}" if row["offset"] is not None else row["topic"]
    at = f" {row['field']}:" if row["field"] else ""
    return f"{row['rejected_time']} {row['stage']:8} {where}{at} {row['reason']}"
