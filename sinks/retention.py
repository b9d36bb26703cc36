"""Retention that a TTL cannot decide alone: the exit crossings of overstays keep 5 years, not 3.

An exit event cannot know it is late when the sink writes it: the stay that says so (``days_over > 0``) comes
from the processors afterwards. So the sink sweeps: it marks ``crossings.overstay`` on the exits of overstayed
stays (one ``ALTER TABLE ... UPDATE``, only when there is something to mark), and the TTL of migration 008
keeps marked rows 5 years. The first sweep covers every stay; later ones the stays ingested since the one
before (with a margin), so the sweep stays cheap on a large warehouse. A stay is judged by its latest revision.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from clickhouse_connect.driver.client import Client

from shekara.logs import get_logger

log = get_logger(__name__)

# Stays ingested this long before the previous sweep began are looked at again: an insert still running when a
# sweep starts is then seen by the next one.
SWEEP_MARGIN = timedelta(hours=1)

_OVERSTAY_EXITS = """
    SELECT exit_event_id AS id, toDate(assumeNotNull(exit_time), 'Asia/Almaty') AS day
    FROM stays FINAL
    WHERE days_over > 0 AND exit_event_id != '' AND exit_time IS NOT NULL AND outcome != 'VOID'
      AND stay_id IN (SELECT stay_id FROM stays WHERE ingested_time >= {since:DateTime64(3, 'UTC')})
"""
# The exits are found by day first (the sort key starts with event_date) and then by id.
_UNMARKED = """
    SELECT count() FROM crossings
    WHERE direction = 'EXIT' AND NOT overstay
      AND event_date IN (SELECT day FROM ({exits}))
      AND (event_date, event_id) IN (SELECT day, id FROM ({exits}))
"""
_MARK = """
    ALTER TABLE crossings UPDATE overstay = true
    WHERE direction = 'EXIT' AND NOT overstay
      AND event_date IN (SELECT day FROM ({exits}))
      AND (event_date, event_id) IN (SELECT day, id FROM ({exits}))
"""


def mark_overstay_exits(client: Client, since: datetime | None = None) -> int:
    """Mark the exit crossings of the stays ingested since `since` (all if None) that overstayed.

    Returns how many crossings were unmarked when the sweep began (the mutation runs in the background).
    """
    # A literal, not a query parameter: ALTER ... UPDATE runs its WHERE later, when the parameters are gone.
    start = (since or datetime(1970, 1, 1, tzinfo=UTC)).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    exits = _OVERSTAY_EXITS.replace("{since:DateTime64(3, 'UTC')}", f"toDateTime64('{start}', 3, 'UTC')")
    unmarked = int(client.query(_UNMARKED.format(exits=exits)).result_rows[0][0])
    if unmarked:
        client.command(_MARK.format(exits=exits))
        log.info("overstay exits marked for 5-year retention", crossings=unmarked)
    return unmarked


class OverstaySweep:
    """Runs `mark_overstay_exits` now and then every `interval` seconds on its own thread, until `stop`."""

    def __init__(self, connect: Callable[[], Client], interval: float) -> None:
        self._connect = connect
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="shekara-overstay-sweep", daemon=True)

    def start(self) -> OverstaySweep:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        client = self._connect()
        since: datetime | None = None
        try:
            while not self._stop.is_set():
                began = datetime.now(UTC)
                try:
                    mark_overstay_exits(client, since)
                    since = began - SWEEP_MARGIN
                except Exception as exc:  # ClickHouse busy or down: the next sweep covers the same stays
                    log.warning("overstay sweep failed; retried later", error=str(exc).splitlines()[0][:300])
                self._stop.wait(self._interval)
        finally:
            client.close()
