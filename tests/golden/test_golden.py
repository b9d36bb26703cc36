"""The golden suite: cases derived by hand from rules/kz.toml and the domain notes (cases/*.toml say how), run
through `shekara check` (the pure core, fast) and through the real broker and a real worker (one stack for all).

A case whose expectation the code does not meet is marked xfail(strict=True) in its .toml with the reason: the
expectation is never bent to the code.
"""

from __future__ import annotations

import json
import tomllib
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from harness import readback
from harness.check import check_file
from harness.stack import Stack
from producers.publish import publish_file
from schemas.ids import alert_id
from schemas.records import Alert, AlertAction, AlertType, Stay
from shekara.embedded import EmbeddedBroker
from shekara.pseudonym import traveller_key
from shekara.reference import load_checkpoints
from shekara.rules import load_rules
from shekara.settings import Settings, TopicNames
from tests.schemas.test_validation import crossing_json

CASES = Path(__file__).parent / "cases"
AS_OF = date(2026, 11, 30)  # after every case's last deadline: the check and the broker judge the same history
RULES = load_rules()
KEY = Settings().pseudonym_key_bytes  # the workers run with the same default settings

AlertKey = tuple[str, str, datetime, str, str, int | None]  # type, anchor, due, final action, rule, days over
StayKey = tuple[str | None, str | None, int, int | None, int, str]  # entry, exit, days, allowed, over, rule


@dataclass(frozen=True)
class Case:
    name: str
    events: Path
    expected: dict[str, Any]

    @property
    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.events.read_text().splitlines() if line.strip()]

    @property
    def keys(self) -> set[str]:
        """Traveller keys of every document in the case (and of a replacement document, if any)."""
        docs = [e["traveller"]["document"] for e in self.lines]
        docs += [
            {"issuing_country": e["new_document_issuing_country"], "number": e["new_document_number"]}
            for e in self.lines
            if e.get("new_document_number")
        ]
        return {traveller_key(d["issuing_country"], d["number"], KEY) for d in docs}

    def alerts(self) -> set[AlertKey]:
        return {
            (a["type"], a["anchor"], a["due"].astimezone(UTC), a["final"], a["rule"], a.get("days_overstayed"))
            for a in self.expected.get("alert", [])
        }

    def stays(self) -> set[StayKey] | int:
        if "stays_count" in self.expected:
            return int(self.expected["stays_count"])
        return {
            (s["entry"] or None, s["exit"] or None, s["days"], s["allowed"], s["over"], s["rule"])
            for s in self.expected.get("stay", [])
        }


def _cases() -> list[Case]:
    return [Case(p.stem, p.with_suffix(".jsonl"), tomllib.loads(p.read_text())) for p in sorted(CASES.glob("*.toml"))]


def _params() -> Iterator[Any]:
    for case in _cases():
        reason = case.expected.get("xfail")
        marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
        yield pytest.param(case, id=case.name, marks=marks)


def _anchors(case: Case) -> dict[str, str]:
    """Alert id -> anchor event id, for every event of the case, every type and every key of the case."""
    keys = case.keys
    return {alert_id(t.value, k, e["event_id"]): e["event_id"] for e in case.lines for k in keys for t in AlertType}


def seen_alerts(case: Case, alerts: Iterable[Alert]) -> set[AlertKey]:
    """Alerts in the expected terms: the anchor event found back from the alert id (any of the case's keys)."""
    anchors = _anchors(case)
    return {
        (
            a.type.value,
            anchors.get(a.alert_id, f"? {a.alert_id}"),
            a.due_time.astimezone(UTC),
            a.action.value,
            a.rule_id,
            a.days_overstayed,
        )
        for a in alerts
    }


def seen_stays(case: Case, stays: Iterable[Stay]) -> set[StayKey] | int:
    got = {(s.entry_event_id, s.exit_event_id, s.days, s.allowed_days, s.days_over, s.rule_id) for s in stays}
    return len(got) if isinstance(case.stays(), int) else got


# --- through `shekara check` (the pure core) -----------------------------------------------------------------


@pytest.mark.parametrize("case", list(_params()))
def test_golden_through_check(case: Case) -> None:
    report = check_file(case.events, as_of=AS_OF, rules=RULES, checkpoints=load_checkpoints(), key=KEY)
    assert [str(r) for r in report.rejections] == []
    alerts = [a for t in report.travellers for a in t.alerts]
    stays = [s for t in report.travellers for s in t.stays]
    assert seen_alerts(case, alerts) == case.alerts()
    assert seen_stays(case, stays) == case.stays()
    assert all(t.open_stay is None and not t.deadlines for t in report.travellers)  # every case ends closed


# --- through the real broker and a real worker (one stack for the whole suite) -------------------------------


@dataclass
class BrokerRun:
    alerts: list[Alert]  # every record, in topic order
    stays: dict[str, Stay]
    rejected: dict[str, list[str]]  # by case
    dead_letters: list[str]  # what the worker dead-lettered (stage: reason), to explain a failure

    def explain(self, keys: set[str]) -> str:
        """The case's alert records and every dead letter of the run: what a failure message shows."""
        records = [f"{a.type.value} {a.action.value} rev {a.revision} key {a.traveller_key[:8]}" for a in self.alerts]
        mine = [r for r, a in zip(records, self.alerts, strict=True) if a.traveller_key in keys]
        return f"alert records of the case: {mine}; dead letters of the run: {self.dead_letters}"


@pytest.fixture(scope="module")
def broker_run(broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory) -> BrokerRun:
    """Every case's events published through the producer client to one partition, then a clock event that moves
    the watermark past every deadline, then the late uploads; one worker judges them all."""
    work = tmp_path_factory.mktemp("golden")
    suffix = uuid.uuid4().hex[:8]
    settings = Settings(
        broker_url=broker.url,
        data_dir=work / "var",
        partitions=1,  # one watermark for all cases: the clock event reaches every traveller
        topics=TopicNames(**{k: f"{v}.{suffix}" for k, v in TopicNames().model_dump().items()}),
    )
    rejected: dict[str, list[str]] = {}
    rounds: list[list[tuple[str, Path]]] = [[], []]  # on time, then late (each case its own file: its rejections)
    for c in _cases():
        late_ids = set(c.expected.get("late", []))
        lines = [x for x in c.events.read_text().splitlines() if x.strip()]
        for n, wanted in enumerate((False, True)):
            part = [x for x in lines if (json.loads(x)["event_id"] in late_ids) == wanted]
            if part:
                path = work / f"{c.name}.{n}.jsonl"
                path.write_text("".join(x + "\n" for x in part))
                rounds[n].append((c.name, path))
    clock = work / "clock.jsonl"
    clock.write_text(_clock())
    rounds[0].append(("clock", clock))
    with Stack(settings, work / "stack", workers=1, sink=False, embedded_broker=False) as stack:
        for files in rounds:
            for name, path in files:
                report = publish_file(path, settings, dead_letters=False)
                assert report.sent + len(report.rejected) == report.read, name
                rejected.setdefault(name, []).extend(str(r) for r in report.rejected)
            stack.wait_processed(timeout=300)
        letters = [f"{d.stage}: {d.reason}" for d in readback.read_dead_letters(settings)]
        return BrokerRun(readback.read_alerts(settings), readback.read_stays(settings), rejected, letters)


def _clock() -> str:
    """A citizen's crossing an hour ago: the partition's event time reaches now, past every case's deadline."""
    now = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    citizen = {"document": {"type": "PASSPORT", "number": "KZ0000001", "issuing_country": "KAZ"}, "nationality": "KAZ"}
    traveller = {**crossing_json()["traveller"], **citizen}
    event = crossing_json(
        event_id="golden-clock", event_time=now, received_time=now, traveller=traveller, entry_basis={"kind": "CITIZEN"}
    )
    return json.dumps(event) + "\n"


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.parametrize("case", list(_params()))
def test_golden_through_broker(case: Case, broker_run: BrokerRun) -> None:
    keys = case.keys
    last: dict[str, Alert] = {}
    for a in broker_run.alerts:
        if a.traveller_key in keys:
            last[a.alert_id] = a
    final = [a for a in last.values() if a.action != AlertAction.RETRACTED]
    stays = [s for s in broker_run.stays.values() if s.traveller_key in keys and s.rule_id != "void"]
    assert broker_run.rejected.get(case.name, []) == []
    assert seen_alerts(case, final) == case.alerts(), broker_run.explain(keys)
    assert seen_stays(case, stays) == case.stays(), broker_run.explain(keys)
    # Late uploads: the records in arrival order (the alert raised while the exit was missing, then corrected).
    anchors = _anchors(case)
    for want in case.expected.get("arrival", []):
        mine = [a for a in broker_run.alerts if anchors.get(a.alert_id) == want["anchor"]]
        got = [a.action.value for a in mine if a.type == want["type"]]
        assert got == want["actions"], want
