"""Triage states land in ClickHouse (issue 17, item 6): the real sink reads the compacted alert-actions topic
from the embedded broker into chDB; the table keeps each alert's latest state, and the view joins open alerts
with their triage state."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from schemas.records import AlertAction, TriageAction
from shekara.settings import Settings
from sinks.clickhouse import connect
from sinks.sink import run_sink
from streams.triage import TriageBoard, TriageRequest
from streams.triage_topic import TriagePublisher
from tests.streams.test_console import encode, make_alert, publish

pytestmark = [pytest.mark.integration, pytest.mark.slow]
T0 = datetime(2026, 2, 1, 8, 0, tzinfo=UTC)


def test_latest_triage_state_lands_and_joins_the_open_alerts(settings: Settings) -> None:
    s = settings.model_copy(update={"sink": settings.sink.model_copy(update={"flush_interval": 0.2})})
    acked, untouched, closed = make_alert("s-1"), make_alert("s-2"), make_alert("s-3")
    publish(s, encode(s, acked, untouched, closed, replace(closed, action=AlertAction.RESOLVED)))
    board, publisher = TriageBoard(), TriagePublisher(s)
    publisher.act(board, TriageRequest(acked.alert_id, TriageAction.ACKNOWLEDGE, "ana", note="calling the host"), T0)
    later = T0 + timedelta(hours=1)
    publisher.act(board, TriageRequest(acked.alert_id, TriageAction.ASSIGN, "chief", assignee="bek"), later)
    publisher.act(board, TriageRequest(closed.alert_id, TriageAction.ACKNOWLEDGE, "ana"), T0)

    stats = run_sink(s, once=True)
    assert stats.dead_lettered == 0
    client = connect(s)
    try:
        rows = client.query("SELECT count() FROM alert_triage").result_rows
        assert rows == [(3,)]  # every state read is stored; FINAL keeps the latest of each alert
        latest = client.query(
            "SELECT alert_id, status, acknowledged_by, assignee, length(notes), revision, updated_by"
            " FROM alert_triage FINAL ORDER BY alert_id"
        ).result_rows
        expected = {
            acked.alert_id: (acked.alert_id, "ACKNOWLEDGED", "ana", "bek", 1, 2, "chief"),
            closed.alert_id: (closed.alert_id, "ACKNOWLEDGED", "ana", None, 0, 1, "ana"),
        }
        assert latest == [expected[k] for k in sorted(expected)]
        view = client.query(
            "SELECT alert_id, triage_status, acknowledged_by, assignee, notes, last_note, raised_time"
            " FROM open_alerts_triage ORDER BY alert_id"
        ).result_rows
        by_id = {r[0]: r[1:] for r in view}
        assert set(by_id) == {acked.alert_id, untouched.alert_id}  # the resolved one is not open
        assert by_id[acked.alert_id][:5] == ("ACKNOWLEDGED", "ana", "bek", 1, "calling the host")
        assert by_id[untouched.alert_id][:2] == ("NEW", None)
        assert by_id[acked.alert_id][5].replace(tzinfo=UTC) == acked.emitted_time
    finally:
        client.close()

    # A replay of the same states (a new consumer group) stores copies that FINAL still collapses to one each.
    again = s.model_copy(update={"sink": s.sink.model_copy(update={"group_id": "replay"})})
    run_sink(again, once=True)
    client = connect(s)
    try:
        assert client.query("SELECT count() FROM alert_triage FINAL").result_rows == [(2,)]
    finally:
        client.close()
