"""The stored state is read back exactly: from bytes written by earlier code (changelogs already on disk) and
from its own bytes (a round trip), for travellers and addresses.

tests/streams/core/fixtures/states_format1.txt holds states serialised by the code of commit 5f430ed (format 1, plain
msgpack tuples), built from the scenarios below; decoding them must give the state this code builds from the
same events, less what format 1 did not keep (the open stay's record, alert revisions: read as 0).
tests/streams/core/fixtures/states_format2.txt holds the same states serialised by the code that added alert
revisions (format 2); decoding them must give the state built now, and encoding that again the same bytes.
"""

from __future__ import annotations

import base64
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import msgpack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.records import EntryBasisKind, HostKind, Purpose, Registration, RegistrationAction, StatusChangeKind
from streams.core import AddressState, Event, Retention, TravellerState, address_step, step
from streams.core.model import AlertCandidate, CrossingEvent, EmittedAlert, EmittedStay
from streams.core.outcome import OPEN
from streams.core.walk import Ban
from streams.core.window import Interval
from tests.streams.core.factory import (
    ALA,
    CHECKPOINTS,
    FAR_FUTURE,
    KHORGOS,
    NOW,
    RULES,
    SYRYM,
    ZHAISAN,
    entry,
    exit_,
    key_of,
    person,
    registration,
    status,
)
from tests.streams.core.test_order import histories

FIXTURE = Path(__file__).parent / "fixtures" / "states_format1.txt"
FIXTURE_2 = Path(__file__).parent / "fixtures" / "states_format2.txt"
TIGHT = Retention(reorder_seconds=40 * 24 * 3600, max_events=6)


def _scenarios() -> dict[str, tuple[str, list[Event]]]:
    uz, pak, worker = person("UZB", "U7000001"), person("PAK", "P7000001"), person("TJK", "T7100001")
    visa, wp = EntryBasisKind.VISA, EntryBasisKind.WORK_PERMIT
    # windowed stays (past intervals), exit without entry, impossible travel, cancellation, watch lists, transit
    uzb: list[Event] = [
        entry("2025-12-10 09:00", SYRYM, who=uz, eid="f-00"),
        exit_("2025-12-20 09:00", ZHAISAN, who=uz, eid="f-01"),
        entry("2026-01-02 10:00", ZHAISAN, who=uz, eid="f-02"),
        exit_("2026-02-20 10:00", ZHAISAN, who=uz, eid="f-03"),
        entry("2026-02-20 11:00", KHORGOS, who=uz, eid="f-04"),
        entry("2026-02-25 10:00", SYRYM, who=uz, eid="f-05"),
        registration("2026-02-25 15:00", who=uz, reg_id="R-U1", eid="f-06"),
        registration("2026-03-01 15:00", RegistrationAction.CANCELLED, who=uz, reg_id="R-U1", eid="f-07"),
        status("2026-03-02 10:00", StatusChangeKind.DOCUMENT_LOST, who=uz, eid="f-08"),
        status("2026-03-03 10:00", StatusChangeKind.EXPELLED, who=uz, valid_from=date(2026, 3, 3), eid="f-09"),
        exit_("2026-03-04 10:00", ZHAISAN, who=uz, eid="f-10"),
        entry("2026-04-10 10:00", ZHAISAN, who=uz, eid="f-11", purpose=Purpose.TRANSIT, dest="UZB"),
        registration("2026-04-10 12:00", who=uz, reg_id="R-U2", eid="f-12"),
        status(
            "2026-04-11 10:00", StatusChangeKind.WORK_PERMIT_ISSUED, who=uz, valid_until=date(2026, 9, 1), eid="f-13"
        ),
        status("2026-04-12 10:00", StatusChangeKind.DOCUMENT_RECOVERED, who=uz, eid="f-14"),
    ]
    # a double entry (a superseded stay), a visa extension
    paks: list[Event] = [
        status(
            "2026-01-05 10:00", StatusChangeKind.WORK_PERMIT_ISSUED, who=pak, valid_until=date(2026, 2, 1), eid="p-01"
        ),
        entry("2026-03-01 10:00", who=pak, basis=visa, visa_expiry=date(2026, 3, 20), eid="p-02"),
        registration("2026-03-01 12:00", who=pak, reg_id="R-P1", eid="p-03"),
        status("2026-03-02 10:00", StatusChangeKind.DOCUMENT_LOST, who=pak, eid="p-04"),
        entry("2026-03-05 10:00", ALA, who=pak, basis=visa, visa_expiry=date(2026, 3, 20), eid="p-05"),
        status("2026-03-10 10:00", StatusChangeKind.VISA_EXTENDED, who=pak, valid_until=date(2026, 5, 1), eid="p-06"),
    ]
    # an open stay on a work permit, later revoked
    work: list[Event] = [
        status(
            "2026-01-05 10:00",
            StatusChangeKind.WORK_PERMIT_ISSUED,
            who=worker,
            valid_until=date(2026, 6, 1),
            eid="w-01",
        ),
        registration("2026-01-09 12:00", who=worker, reg_id="R-W0", eid="w-02"),
        entry("2026-01-10 10:00", who=worker, basis=wp, eid="w-03"),
        status("2026-02-10 10:00", StatusChangeKind.WORK_PERMIT_REVOKED, who=worker, eid="w-04"),
    ]
    return {"uzb": (key_of(uz), uzb), "pak": (key_of(pak), paks), "worker": (key_of(worker), work)}


def _feed(key: str, events: list[Event], order: list[int] | range, lag: timedelta) -> TravellerState:
    state = TravellerState.empty(key)
    for i in order:
        e = events[i]
        state = step(
            state,
            [e],
            watermark=e.event_time - lag,
            emitted_time=NOW,
            rules=RULES,
            checkpoints=CHECKPOINTS,
            retention=TIGHT,
        ).state
    return state


def traveller_states() -> dict[str, TravellerState]:
    """The states of the fixture, by name (how each was built)."""
    s = _scenarios()
    (ku, uz), (kp, pak), (kw, work) = s["uzb"], s["pak"], s["worker"]
    return {
        "uzb_in_order": _feed(ku, uz, range(len(uz)), timedelta(hours=1)),
        "uzb_late": _feed(ku, uz, [1, 0, 2, 4, 5, 3, 6, 7, 8, 9, 10, 11, 12, 13, 14], timedelta(hours=30)),
        "pak": _feed(kp, pak, range(len(pak)), timedelta(hours=1)),
        "uzb_gated": _feed(ku, uz, range(len(uz)), timedelta(days=60)),
        "pak_gated": _feed(kp, pak, range(len(pak)), timedelta(days=60)),
        "worker": _feed(kw, work, range(len(work)), timedelta(hours=1)),
        "empty": TravellerState.empty("nobody"),
    }


def _registrant(r: Registration) -> str:
    return key_of(r.traveller)


def address_state() -> AddressState:
    """Twelve foreigners at one private host (over its threshold), one cancelled, some out of order."""
    regs = [
        registration(
            f"2026-03-{i + 1:02d} 10:00",
            who=person("TJK", f"T70000{i}"),
            host=HostKind.PRIVATE_HOST,
            reg_id=f"R-A{i}",
            eid=f"a-{i:02d}",
        )
        for i in range(12)
    ]
    regs.append(
        registration(
            "2026-03-20 10:00",
            RegistrationAction.CANCELLED,
            who=person("TJK", "T700000"),
            host=HostKind.PRIVATE_HOST,
            reg_id="R-A0",
            eid="a-99",
        )
    )
    state = AddressState.empty("addr-key-1")
    for i in (0, 1, 2, 4, 5, 3, 6, 7, 8, 9, 11, 10, 12):
        state, _ = address_step(state, [regs[i]], traveller_key_of=_registrant, emitted_time=NOW, rules=RULES)
    return state


def _fixture(path: Path = FIXTURE) -> dict[str, bytes]:
    lines = (line.split(" ", 1) for line in path.read_text().splitlines() if line.strip())
    return {name: base64.b64decode(data) for name, data in lines}


def write_fixture_2() -> None:
    """Writes states_format2.txt from the code at hand: only when the format changes (then add a format-3 file)."""
    states: dict[str, bytes] = {n: s.to_bytes() for n, s in traveller_states().items()}
    states["address"] = address_state().to_bytes()
    FIXTURE_2.write_text("".join(f"{n} {base64.b64encode(b).decode()}\n" for n, b in states.items()))


def _unrevised(emitted: dict[str, EmittedAlert]) -> dict[str, EmittedAlert]:
    """Format 1 kept no alert revision: it reads as 0."""
    return {a: e._replace(revision=0) for a, e in emitted.items()}


def _fields(s: TravellerState) -> tuple[Any, ...]:
    return (
        s.traveller_key,
        s.history,
        s.cursor.pack(),
        s.base.pack() if s.base is not None else None,
        s.base_key,
        s.pending,
        s.emitted,
        s.stays_pending,
        s.stays_emitted,
    )


def _as_format_1(state: TravellerState) -> TravellerState:
    """The state as format-1 code built it: that code kept no record of the open stay (issue 16 added it) and no
    alert revision."""
    open_id = state.cursor.open.entry.event_id if state.cursor.open is not None else None
    return replace(
        state,
        emitted=_unrevised(state.emitted),
        stays_pending={k: v for k, v in state.stays_pending.items() if v.gated != OPEN},
        stays_emitted={k: v for k, v in state.stays_emitted.items() if k != open_id or v.revision > 0},
    )


def test_traveller_states_written_by_format_1_code_decode_to_the_state_built_now():
    stored = _fixture()
    built = traveller_states()
    assert set(built) <= set(stored)
    for name, state in built.items():
        decoded = TravellerState.from_bytes(stored[name])
        assert _fields(decoded) == _fields(_as_format_1(state)), name
        assert decoded.to_bytes() == _as_format_1(state).to_bytes(), name


def test_traveller_states_written_by_format_2_code_decode_to_the_state_built_now():
    stored = _fixture(FIXTURE_2)
    built = traveller_states()
    assert set(built) <= set(stored)
    for name, state in built.items():
        decoded = TravellerState.from_bytes(stored[name])
        assert _fields(decoded) == _fields(state), name
        assert decoded.to_bytes() == stored[name] == state.to_bytes(), name
    assert any(e.revision > 0 for s in built.values() for e in s.emitted.values()), "some alert has a later record"


def test_a_format_1_state_revises_its_alerts_past_what_the_warehouse_holds():
    """Every record written before revisions is revision 0 in the warehouse: a format-1 state's next record of an
    alert must be 1, or the sink would take it for a replay of the stored one and drop it."""
    who = person("UZB", "U7000009")
    tick = dict(watermark=FAR_FUTURE, emitted_time=NOW, rules=RULES, checkpoints=CHECKPOINTS)
    first = step(TravellerState.empty(key_of(who)), [entry("2026-01-02 10:00", ZHAISAN, who=who, eid="o-01")], **tick)  # type: ignore[arg-type]
    assert first.alerts and all(a.action == "RAISED" and a.revision == 0 for a in first.alerts)
    fields = list(msgpack.unpackb(first.state.to_bytes(), use_list=False))
    fields[0], fields[7] = 1, {a: e[:2] for a, e in fields[7].items()}  # as format-1 code stored it
    old = TravellerState.from_bytes(msgpack.packb(fields))
    assert old.emitted and all(e.revision == 0 for e in old.emitted.values())
    closed = step(old, [exit_("2026-03-20 10:00", ZHAISAN, who=who, eid="o-02")], **tick)  # type: ignore[arg-type]
    resolved = [a for a in closed.alerts if a.alert_id in {r.alert_id for r in first.alerts}]
    assert resolved and all(a.action == "RESOLVED" and a.revision == 1 for a in resolved)


def test_a_decoded_state_decides_like_the_state_it_was_written_from():
    stored = _fixture()
    s = _scenarios()
    uz_key, uz_events = s["uzb"]
    later = [exit_("2026-04-12 18:00", ZHAISAN, who=uz_events[0].traveller, eid="f-15")]
    for name, state in traveller_states().items():
        if name == "empty":
            continue
        decoded = TravellerState.from_bytes(stored[name])
        events = later if state.traveller_key == uz_key else []
        a = step(decoded, events, watermark=FAR_FUTURE, emitted_time=NOW, rules=RULES, checkpoints=CHECKPOINTS)
        # as format-1 code wrote it: an open stay of a state from before issue 16 has no record until it changes
        was = _as_format_1(state)
        b = step(was, events, watermark=FAR_FUTURE, emitted_time=NOW, rules=RULES, checkpoints=CHECKPOINTS)
        assert a.alerts == b.alerts and a.stays == b.stays and a.next_due == b.next_due, name
        assert a.state.to_bytes() == b.state.to_bytes(), name
    assert any(
        step(
            TravellerState.from_bytes(stored[n]),
            [],
            watermark=FAR_FUTURE,
            emitted_time=NOW,
            rules=RULES,
            checkpoints=CHECKPOINTS,
        ).alerts
        for n in ("uzb_gated", "pak_gated")
    ), "the gated states have alerts still to emit"


def test_stored_records_decode_to_named_records():
    stored = _fixture()
    worker = TravellerState.from_bytes(stored["worker"])
    stay = worker.cursor.open
    assert stay is not None and isinstance(stay.entry, CrossingEvent)
    assert (stay.entry.event_id, stay.entry.basis, stay.entry.checkpoint) == ("w-03", "WORK_PERMIT", ZHAISAN)
    assert stay.permit is not None and stay.permit.change == "WORK_PERMIT_ISSUED"
    assert [s.change for s in stay.statuses] == ["WORK_PERMIT_REVOKED"]
    assert [r.registration_id for r in stay.regs] == ["R-W0"]
    uzb = TravellerState.from_bytes(stored["uzb_in_order"])
    assert uzb.cursor.bans and all(isinstance(b, Ban) and b.last_day > b.day for b in uzb.cursor.bans)
    assert uzb.cursor.past and all(isinstance(i, Interval) and i.first <= i.last for i in uzb.cursor.past)
    assert uzb.cursor.prev is not None and uzb.cursor.prev.checkpoint == ZHAISAN
    assert all(isinstance(c, AlertCandidate) and c.due > 0 for c in uzb.pending.values())
    assert all(isinstance(e, EmittedAlert) and e.alert.id == a for a, e in uzb.emitted.items())
    assert all(isinstance(e, EmittedStay) and e.live == 1 for e in uzb.stays_emitted.values())
    gated = TravellerState.from_bytes(stored["pak_gated"])
    assert [s.gated for s in gated.stays_pending.values()] == [1]
    address = AddressState.from_bytes(stored["address"])
    assert all(r.host_kind == "PRIVATE_HOST" for r in address.history)
    assert all(r.registration_id == k for k, r in address.cursor.active.items())


def test_address_state_written_by_format_1_code_decodes_to_the_state_built_now():
    stored = _fixture()["address"]
    state = address_state()
    decoded = AddressState.from_bytes(stored)
    assert decoded.history == state.history and decoded.emitted == _unrevised(state.emitted) and decoded.emitted
    assert decoded.cursor.pack() == state.cursor.pack() and decoded.base_key == state.base_key
    assert decoded.to_bytes() == replace(state, emitted=_unrevised(state.emitted)).to_bytes()


def test_address_state_written_by_format_2_code_decodes_to_the_state_built_now():
    stored = _fixture(FIXTURE_2)["address"]
    state = address_state()
    decoded = AddressState.from_bytes(stored)
    assert decoded.history == state.history and decoded.emitted == state.emitted and decoded.emitted
    assert decoded.to_bytes() == stored == state.to_bytes()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(h=histories(), lag_h=st.sampled_from([0, 6, 48, 24 * 40]), reverse_pairs=st.booleans())
def test_any_traveller_state_survives_a_round_trip(h: tuple[str, list[Event]], lag_h: int, reverse_pairs: bool) -> None:
    key, events = h
    order = list(range(len(events)))
    if reverse_pairs:  # some late arrivals: replays, revised and voided stays
        for i in range(0, len(order) - 1, 2):
            order[i], order[i + 1] = order[i + 1], order[i]
    state = _feed(key, events, order, timedelta(hours=lag_h))
    again = TravellerState.from_bytes(state.to_bytes())
    assert _fields(again) == _fields(state)
    assert again.to_bytes() == state.to_bytes()
    tick = dict(watermark=FAR_FUTURE, emitted_time=NOW, rules=RULES, checkpoints=CHECKPOINTS, retention=TIGHT)
    a, b = step(again, [], **tick), step(state, [], **tick)  # type: ignore[arg-type]
    assert (a.alerts, a.stays) == (b.alerts, b.stays)
