"""Officers' triage (issue 17, item 6): the pure state logic, then the console as an officer uses it.

The console runs as the real `shekara` command in a subprocess against the embedded broker: alerts are
published to the alerts topic, `shekara alerts ack/assign/note` write states to the compacted alert-actions
topic, and `shekara alerts --json` reads both back.
"""

from __future__ import annotations

import getpass
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

from schemas.records import AlertTriage, TriageAction, TriageStatus
from schemas.serde import Serde
from shekara.settings import Limits, Settings
from streams.triage import TriageBoard, TriageError, TriageRequest, apply, as_json, summary, validate
from streams.triage_topic import read_board
from tests.streams.test_console import cli_env, encode, make_alert, publish

T0 = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)
ALERT = "a" * 64


def req(action: TriageAction, who: str = "ana", **kw: str | None) -> TriageRequest:
    return validate(TriageRequest(ALERT, action, who, **kw), Limits())


# --- pure ----------------------------------------------------------------------------------------------


def test_ack_then_assign_then_note_keeps_who_when_and_every_note() -> None:
    s1 = apply(None, req(TriageAction.ACKNOWLEDGE, note="calling the host"), T0)
    assert (s1.status, s1.acknowledged_by, s1.acknowledged_time, s1.revision) == (
        TriageStatus.ACKNOWLEDGED,
        "ana",
        T0,
        1,
    )
    s2 = apply(s1, req(TriageAction.ASSIGN, who="chief", assignee="bek"), T0 + timedelta(minutes=5))
    s3 = apply(s2, req(TriageAction.NOTE, who="bek", note="host confirms departure"), T0 + timedelta(hours=1))
    assert s3.assignee == "bek" and s3.revision == 3 and s3.updated_by == "bek"
    assert [(n.author, n.text) for n in s3.notes] == [("ana", "calling the host"), ("bek", "host confirms departure")]
    # A second acknowledgement does not take the first one's name or time.
    s4 = apply(s3, req(TriageAction.ACKNOWLEDGE, who="dana"), T0 + timedelta(hours=2))
    assert (s4.acknowledged_by, s4.acknowledged_time, s4.last_action) == ("ana", T0, TriageAction.ACKNOWLEDGE)
    assert summary(s4) == "ack by ana, assigned to bek, 2 notes" and summary(None) == "new"
    shown = as_json(s4)
    assert shown is not None and as_json(None) is None
    assert shown["notes"][1] == {
        "author": "bek",
        "time": "2026-01-05T10:30:00+00:00",
        "text": "host confirms departure",
    }


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (TriageRequest(ALERT, TriageAction.NOTE, "ana", note="   "), "a note is required"),
        (TriageRequest(ALERT, TriageAction.ASSIGN, "ana"), "assign needs the officer"),
        (TriageRequest(ALERT, TriageAction.ASSIGN, "ana", assignee="b\nk"), "assignee must be one line"),
        (TriageRequest(ALERT, TriageAction.ACKNOWLEDGE, " "), "who is acting is unknown"),
        (TriageRequest(ALERT, TriageAction.NOTE, "ana", note="x" * 21), "the note is 21 characters; at most 20"),
        (TriageRequest(ALERT, TriageAction.ACKNOWLEDGE, "n" * 9), "name is 9 characters; at most 8"),
    ],
)
def test_bad_requests_are_refused_in_one_line(request_: TriageRequest, message: str) -> None:
    with pytest.raises(TriageError, match=message):
        validate(request_, Limits(max_note_chars=20, max_name_chars=8))


def test_board_keeps_the_latest_state_even_when_an_older_one_arrives_last() -> None:
    board = TriageBoard()
    newer = apply(apply(None, req(TriageAction.ACKNOWLEDGE), T0), req(TriageAction.ASSIGN, assignee="bek"), T0)
    older = apply(None, req(TriageAction.ACKNOWLEDGE), T0)
    board.put(newer)
    board.put(older)  # e.g. this replica's own record echoed back after another replica's newer one
    assert board.get(ALERT) == newer
    board.remove(ALERT)
    assert board.get(ALERT) is None and len(board) == 0


# --- the console, as an officer runs it -------------------------------------------------------------------


def shekara(settings: Settings, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", "alerts", *args],
        env={**cli_env(settings), **env},
        capture_output=True,
        text=True,
        timeout=90,
    )


@pytest.mark.integration
def test_officers_ack_assign_and_annotate_from_the_console(settings: Settings) -> None:
    first, other = make_alert("t-1"), make_alert("t-2")
    publish(settings, encode(settings, first, other))

    done = shekara(settings, "ack", first.alert_id[:12], "--note", "calling the host", "--as", "ana")
    assert done.returncode == 0, done.stderr
    assert f"{first.alert_id}: ack by ana, 1 note (revision 1, by ana)" in done.stdout
    done = shekara(settings, "assign", first.alert_id, "--to", "bek")  # by the OS user
    assert done.returncode == 0, done.stderr
    assert f"assigned to bek, 1 note (revision 2, by {getpass.getuser()})" in done.stdout
    done = shekara(settings, "note", first.alert_id, "--note", "host confirms departure", "--as", "bek")
    assert done.returncode == 0, done.stderr

    # The state is on the compacted topic, readable by any reader from the beginning.
    board = TriageBoard()
    read_board(settings, board)
    state = board.get(first.alert_id)
    assert isinstance(state, AlertTriage)
    assert (state.status, state.acknowledged_by, state.assignee, state.revision) == (
        TriageStatus.ACKNOWLEDGED,
        "ana",
        "bek",
        3,
    )
    assert [(n.author, n.text) for n in state.notes] == [
        ("ana", "calling the host"),
        ("bek", "host confirms departure"),
    ]
    assert board.get(other.alert_id) is None

    # `shekara alerts --json`: one JSON object per line, with raised/due times, whole key and triage.
    done = shekara(settings, "--json")
    assert done.returncode == 0, done.stderr
    rows = {r["alert_id"]: r for r in map(json.loads, done.stdout.splitlines())}
    assert set(rows) == {first.alert_id, other.alert_id}
    row = rows[first.alert_id]
    assert row["traveller_key"] == first.traveller_key and row["emitted_time"] == first.emitted_time.isoformat()
    assert row["due_time"] == first.due_time.isoformat()
    assert row["triage"]["assignee"] == "bek" and row["triage"]["acknowledged_by"] == "ana"
    assert rows[other.alert_id]["triage"] is None
    assert row["triage"]["updated_by"] == "bek"

    # The coloured lines say the same.
    done = shekara(settings)
    assert "triage ack by ana, assigned to bek, 2 notes" in done.stdout and "triage new" in done.stdout


@pytest.mark.integration
def test_console_refuses_unknown_ids_and_long_notes_in_one_line(settings: Settings) -> None:
    alert = make_alert("t-9")
    publish(settings, encode(settings, alert))
    cases = [
        (("ack", "0123456789abcdef"), {}, "error: no alert with id '0123456789abcdef'"),
        (("ack", "abc"), {}, "is too short"),
        (("note", alert.alert_id, "--note", "x" * 30), {"SHEKARA_LIMITS__MAX_NOTE_CHARS": "20"}, "at most 20"),
        (("assign", alert.alert_id), {}, "Missing option '--to'"),
    ]
    for args, env, message in cases:
        done = shekara(settings, *args, **env)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert message in done.stderr and "Traceback" not in done.stderr, done.stderr
    board = TriageBoard()
    read_board(settings, board)
    assert len(board) == 0  # nothing was written by a refused action


def test_triage_record_round_trips_through_the_wire_format() -> None:
    state = apply(None, req(TriageAction.ASSIGN, assignee="bek", note="n1"), T0)
    serde = Serde()
    assert serde.decode(serde.encode(state, "t"), "t") == state
