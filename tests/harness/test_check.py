"""`shekara check FILE`: a traveller's events through the processors' core, explained; and the JSON-lines examples
in docs/examples/, which must work with `shekara check` and with `shekara publish` (real embedded broker)."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest
from typer.testing import CliRunner

from harness.check import CheckReport, check_file
from harness.cli import app
from producers.publish import publish_file
from shekara.reference import load_checkpoints
from shekara.rules import load_rules
from shekara.settings import REPO_ROOT, Settings

EXAMPLES = sorted((REPO_ROOT / "docs" / "examples").glob("*.jsonl"))
STORY = REPO_ROOT / "docs" / "examples" / "overstay.jsonl"
RULES = load_rules()
KEY = b"test-check-key"


def check(path: Path, as_of: str) -> CheckReport:
    return check_file(path, as_of=date.fromisoformat(as_of), rules=RULES, checkpoints=load_checkpoints(), key=KEY)


def run(*args: str) -> tuple[int, list[str]]:
    result = CliRunner().invoke(app, ["check", *args])
    return result.exit_code, result.output.splitlines()


def test_every_record_type_has_an_example() -> None:
    types = {json.loads(line)["record_type"] for p in EXAMPLES for line in p.read_text().splitlines() if line}
    assert types == {"Crossing", "Registration", "StatusChange"}
    kinds = {json.loads(line)["kind"] for line in (REPO_ROOT / "docs/examples/status-change.jsonl").open()}
    assert len(kinds) == 12  # every StatusChangeKind (DOCUMENT_REPLACED: schema v3)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_through_check(path: Path) -> None:
    code, lines = run(str(path), "--as-of", "2026-11-30", "--json")
    records = [json.loads(line) for line in lines]
    summary = next(r for r in records if r["record"] == "summary")
    assert code == 0
    assert summary["read"] == summary["valid"] == len(path.read_text().splitlines())
    assert not [r for r in records if r["record"] in ("rejected", "refused")]


@pytest.mark.integration
@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_through_publish(path: Path, settings: Settings) -> None:
    report = publish_file(path, settings)
    assert [str(r) for r in report.rejected] == []
    assert report.sent == report.read == len(path.read_text().splitlines())


def test_open_stay_before_its_last_day_shows_the_deadline() -> None:
    # Entered 2026-08-20 (day 1) visa-free, UZB: 30 days, last allowed day 09-18; never registered (3 working days:
    # 08-21, 08-24, 08-25). Earlier stay 07-02 .. 07-30 = 29 days, so on 09-10: 29 + 22 = 51 days in 180.
    report = check(STORY, "2026-09-10")
    (t,) = report.travellers
    assert t.open_stay is not None
    assert (t.open_stay.day, t.open_stay.allowed_days, t.open_stay.last_allowed_day) == (22, 30, date(2026, 9, 18))
    assert (t.open_stay.registration, t.open_stay.registration_deadline) == ("missed", date(2026, 8, 25))
    assert [(a.type.value, a.action.value) for a in t.alerts] == [("UNREGISTERED_STAY", "RAISED")]
    assert [(d.type, RULES.local_date(d.due)) for d in t.deadlines] == [("IN_COUNTRY_OVERSTAY", date(2026, 9, 19))]
    assert t.window is not None and (t.window.present, t.window.left) == (51, 39)
    assert [(s.days, s.allowed_days) for s in t.stays] == [(29, 30)]


def test_the_overstay_is_raised_once_its_day_has_begun() -> None:
    on_last_day = check(STORY, "2026-09-18").travellers[0]
    after = check(STORY, "2026-09-19").travellers[0]
    assert "IN_COUNTRY_OVERSTAY" not in {a.type.value for a in on_last_day.alerts}
    (overstay,) = [a for a in after.alerts if a.type.value == "IN_COUNTRY_OVERSTAY"]
    assert overstay.rule_id == "visa-free-general" and "30-day limit" in overstay.reason
    assert not after.deadlines


def test_events_after_the_as_of_day_are_left_out() -> None:
    report = check(STORY, "2026-07-31")
    assert report.after_as_of == 1 and report.valid == 4
    (t,) = report.travellers
    assert t.open_stay is None and [s.exit_event_id for s in t.stays] == ["ex-o-3"]


def test_text_names_rule_and_reason() -> None:
    code, lines = run(str(STORY), "--as-of", "2026-09-25")
    text = "\n".join(lines)
    assert code == 0
    assert "last allowed day 2026-09-18 (rule visa-free-general 2023-01-27)" in text
    assert "RAISED    IN_COUNTRY_OVERSTAY HIGH, due 2026-09-19 00:00" in text
    assert "day 31 began 2026-09-19 00:00 Asia/Almaty with no exit recorded" in text


def test_bad_lines_are_one_line_each_and_valid_ones_still_judged(tmp_path: Path) -> None:
    good = STORY.read_text().splitlines()
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join([good[0], "{not json", json.dumps({"record_type": "Visa"}), *good[1:]]) + "\n")
    code, lines = run(str(path), "--as-of", "2026-09-25")
    assert code == 0
    assert lines[:2] == [
        "line 2: (line): not valid JSON: Expecting property name enclosed in double quotes at column 2",
        "line 3: record_type: must be one of Crossing, Registration, StatusChange; got 'Visa'",
    ]
    assert "read 6, valid 4, rejected 2" in lines[2]


def test_nothing_valid_exits_1_and_a_bad_day_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text("{not json\n")
    assert run(str(path), "--as-of", "2026-09-25")[0] == 1
    code, lines = run(str(STORY), "--as-of", "25.09.2026")
    assert code == 2 and len(lines) == 1 and "--as-of must be a day YYYY-MM-DD" in lines[0]
