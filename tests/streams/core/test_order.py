"""Decisions are a function of the ordered history and the watermark only (docs/alerts.md).

Whatever order, batching and duplication the events arrive in, and whenever the state is serialised or its
history pruned, the final alert set and the final stays are those of the sorted history processed at once.
"""

from __future__ import annotations

import random
from datetime import date, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.records import AlertAction, EntryBasisKind, Purpose, RegistrationAction, StatusChangeKind
from streams.core import Event, Retention, TravellerState, step
from tests.streams.core.factory import (
    ALA,
    CHECKPOINTS,
    FAR_FUTURE,
    KHORGOS,
    NOW,
    NQZ,
    RULES,
    SYRYM,
    ZHAISAN,
    at,
    entry,
    exit_,
    final_alerts,
    final_stays,
    key_of,
    person,
    registration,
    status,
)

EVERYTHING = Retention(reorder_seconds=20 * 365 * 24 * 3600, max_events=10_000)
TIGHT = Retention(reorder_seconds=2 * 24 * 3600, max_events=3)
CPS = [ZHAISAN, SYRYM, KHORGOS, ALA, NQZ, "KZ-UZ-ZHIBEK-ZHOLY", "KZ-KG-KORDAI"]
GAPS_MIN = [1, 30, 90, 600, 1440, 3 * 1440, 10 * 1440, 28 * 1440, 33 * 1440, 60 * 1440]
PEOPLE = {
    "UZB": (person("UZB", "U1000001"), EntryBasisKind.VISA_FREE),
    "RUS": (person("RUS", "R1000001"), EntryBasisKind.VISA_FREE),
    "IND": (person("IND", "I1000001"), EntryBasisKind.VISA_FREE),
    "PAK": (person("PAK", "P1000001"), EntryBasisKind.VISA),
    "KAZ": (person("KAZ", "K1000001"), EntryBasisKind.CITIZEN),
}
STATUSES = [
    StatusChangeKind.VISA_EXTENDED,
    StatusChangeKind.WORK_PERMIT_ISSUED,
    StatusChangeKind.WORK_PERMIT_REVOKED,
    StatusChangeKind.REFUGEE_GRANTED,
    StatusChangeKind.EXPELLED,
    StatusChangeKind.DOCUMENT_LOST,
    StatusChangeKind.DOCUMENT_RECOVERED,
]


@st.composite
def histories(draw: st.DrawFn, max_events: int = 14) -> tuple[str, list[Event]]:
    """A traveller's history: crossings, registrations and status changes at varied intervals."""
    nat = draw(st.sampled_from(sorted(PEOPLE)))
    who, basis = PEOPLE[nat]
    t = at("2026-05-20 08:00") + timedelta(minutes=draw(st.integers(0, 1440)))
    events: list[Event] = []
    for _ in range(draw(st.integers(1, max_events))):
        t += timedelta(minutes=draw(st.sampled_from(GAPS_MIN)) + draw(st.integers(0, 59)))
        kind = draw(st.sampled_from(["entry", "entry", "exit", "exit", "reg", "cancel", "status"]))
        if kind in ("entry", "exit"):
            cp = draw(st.sampled_from(CPS))
            transit = kind == "entry" and draw(st.booleans()) and draw(st.booleans())
            kw = dict(
                who=who,
                basis=basis,
                purpose=Purpose.TRANSIT if transit else Purpose.TOURISM,
                dest="RUS" if transit else None,
                visa_expiry=(t + timedelta(days=draw(st.integers(3, 40)))).date()
                if basis == EntryBasisKind.VISA
                else None,
            )
            events.append(entry(t, cp, **kw) if kind == "entry" else exit_(t, cp, **kw))
        elif kind in ("reg", "cancel"):
            action = RegistrationAction.REGISTERED if kind == "reg" else RegistrationAction.CANCELLED
            events.append(registration(t, action, who=who, reg_id=f"R-{draw(st.integers(1, 3))}"))
        else:
            sk = draw(st.sampled_from(STATUSES))
            until = (t + timedelta(days=draw(st.integers(1, 200)))).date()
            events.append(status(t, sk, who=who, valid_until=until if sk != StatusChangeKind.REFUGEE_GRANTED else None))
    return key_of(who), events


def _summary(records: tuple[list, list]) -> tuple[dict, dict]:
    """Final alerts (id -> last action and content) and final stays (id -> content without the revision)."""
    alerts, stays = records
    fa = {
        i: (a.action, a.type, a.due_time, tuple(a.evidence_event_ids), a.days_overstayed, a.reason)
        for i, a in final_alerts(alerts).items()
    }
    fs = {
        i: (s.entry_event_id, s.exit_event_id, s.days, s.allowed_days, s.days_over, s.rule_id)
        for i, s in final_stays(stays).items()
    }
    return fa, fs


def _at_once(key: str, events: list[Event]) -> tuple[list, list]:
    r = step(
        TravellerState.empty(key), events, watermark=FAR_FUTURE, emitted_time=NOW, rules=RULES, checkpoints=CHECKPOINTS
    )
    return r.alerts, r.stays


def _arrive(
    key: str,
    batches: list[list[Event]],
    *,
    lateness: timedelta,
    retention: Retention = EVERYTHING,
    serialise: bool = False,
    final_tick: bool = True,
) -> tuple[list, list, TravellerState]:
    """Feed batches in order, the watermark following the latest event time seen, then a final tick."""
    state = TravellerState.empty(key)
    alerts: list = []
    stays: list = []
    high: datetime | None = None
    for batch in batches:
        if batch:
            latest = max(e.event_time for e in batch)
            high = latest if high is None else max(high, latest)
        wm = (high - lateness) if high is not None else at("2026-01-01 00:00")
        r = step(
            state, batch, watermark=wm, emitted_time=NOW, rules=RULES, checkpoints=CHECKPOINTS, retention=retention
        )
        assert r.rejected == []
        alerts += r.alerts
        stays += r.stays
        state = TravellerState.from_bytes(r.state.to_bytes()) if serialise else r.state
    if final_tick:
        r = step(
            state, [], watermark=FAR_FUTURE, emitted_time=NOW, rules=RULES, checkpoints=CHECKPOINTS, retention=retention
        )
        alerts += r.alerts
        stays += r.stays
        state = r.state
    return alerts, stays, state


def _split(rng: random.Random, events: list[Event]) -> list[list[Event]]:
    out: list[list[Event]] = []
    i = 0
    while i < len(events):
        n = rng.choice([1, 1, 1, 2, 3])
        out.append(events[i : i + n])
        i += n
        if rng.random() < 0.2:
            out.append([])  # a deadline tick between batches
    return out


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories(), st.randoms(use_true_random=False), st.sampled_from([0, 1, 6, 30, 24 * 10]))
def test_any_arrival_order_batching_and_duplicates_give_the_same_final_alerts_and_stays(h, rng, lateness_h):
    key, events = h
    reference = _summary(_at_once(key, sorted(events, key=lambda e: (e.event_time, e.event_id))))
    shuffled = list(events)
    rng.shuffle(shuffled)
    shuffled += [rng.choice(events) for _ in range(rng.randint(0, 3))]  # duplicates, same event id
    rng.shuffle(shuffled)
    alerts, stays, _ = _arrive(
        key, _split(rng, shuffled), lateness=timedelta(hours=lateness_h), serialise=rng.random() < 0.5
    )
    assert _summary((alerts, stays)) == reference


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories(max_events=20), st.sampled_from([0, 6, 48]))
def test_in_order_arrival_with_pruning_emits_exactly_the_same_records(h, lateness_h):
    key, events = h
    ordered = [[e] for e in sorted(events, key=lambda e: (e.event_time, e.event_id))]
    lateness = timedelta(hours=lateness_h)
    full = _arrive(key, ordered, lateness=lateness, retention=EVERYTHING)
    pruned = _arrive(key, ordered, lateness=lateness, retention=TIGHT, serialise=True)
    assert [(a.alert_id, a.action, a.reason, a.due_time) for a in pruned[0]] == [
        (a.alert_id, a.action, a.reason, a.due_time) for a in full[0]
    ]
    assert pruned[1] == full[1]
    kept = pruned[2].history
    horizon = TIGHT.reorder_seconds * 1_000_000
    assert len(kept) <= TIGHT.max_events or all(e[0] >= kept[-1][0] - horizon for e in kept)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories(max_events=20), st.randoms(use_true_random=False))
def test_late_events_within_the_reorder_horizon_are_applied_exactly_with_pruning(h, rng):
    """Each event is uploaded up to 30 h late (less than the 2-day horizon): same final result as at once."""
    key, events = h
    arrival = sorted(events, key=lambda e: e.event_time + timedelta(hours=rng.uniform(0, 30)))
    reference = _summary(_at_once(key, sorted(events, key=lambda e: (e.event_time, e.event_id))))
    alerts, stays, _ = _arrive(key, [[e] for e in arrival], lateness=timedelta(hours=6), retention=TIGHT)
    assert _summary((alerts, stays)) == reference


def test_replay_gives_the_same_ids_and_records():
    rng = random.Random(3)
    who, basis = PEOPLE["UZB"]
    key = key_of(who)
    t = at("2026-03-01 10:00")
    events = []
    for i in range(12):
        t += timedelta(days=rng.choice([2, 20, 33]))
        events.append((entry if i % 2 == 0 else exit_)(t, rng.choice(CPS), who=who, basis=basis))
    first = _arrive(key, [[e] for e in events], lateness=timedelta(hours=6))
    second = _arrive(key, [[e] for e in events], lateness=timedelta(hours=6))
    assert first[0] and first[1]
    assert [(a.alert_id, a.action) for a in first[0]] == [(a.alert_id, a.action) for a in second[0]]
    assert first[1] == second[1]


def test_state_round_trip():
    who, basis = PEOPLE["PAK"]
    key = key_of(who)
    events = [
        status("2026-01-05 10:00", StatusChangeKind.WORK_PERMIT_ISSUED, who=who, valid_until=date(2026, 2, 1)),
        entry("2026-03-01 10:00", who=who, basis=basis, visa_expiry=date(2026, 3, 20)),
        registration("2026-03-01 12:00", who=who),
        status("2026-03-02 10:00", StatusChangeKind.DOCUMENT_LOST, who=who),
        entry("2026-03-05 10:00", ALA, who=who, basis=basis, visa_expiry=date(2026, 3, 20)),
    ]
    alerts, _, state = _arrive(key, [[e] for e in events], lateness=timedelta(hours=1), final_tick=False)
    assert alerts and state.stays_pending and state.pending and state.cursor.open is not None
    again = TravellerState.from_bytes(state.to_bytes())
    assert again.to_bytes() == state.to_bytes()
    assert again.history == state.history and again.pending == state.pending and again.emitted == state.emitted
    assert again.cursor.pack() == state.cursor.pack() and again.stays_pending == state.stays_pending
    assert (
        TravellerState.empty(key).to_bytes()
        == TravellerState.from_bytes(TravellerState.empty(key).to_bytes()).to_bytes()
    )


def test_events_older_than_the_retained_history_are_rejected_with_a_reason():
    who, basis = PEOPLE["UZB"]
    key = key_of(who)
    events = [entry("2026-03-01 10:00", who=who, basis=basis), exit_("2026-03-03 10:00", who=who, basis=basis)]
    events += [entry("2026-03-20 10:00", who=who, basis=basis)]  # 17 days later: the first trip is folded
    _, _, state = _arrive(key, [[e] for e in events], lateness=timedelta(hours=1), retention=TIGHT, final_tick=False)
    assert state.base_key is not None
    late = exit_("2026-03-02 10:00", SYRYM, who=who, basis=basis)
    r = step(
        state,
        [late],
        watermark=at("2026-03-20 10:00"),
        emitted_time=NOW,
        rules=RULES,
        checkpoints=CHECKPOINTS,
        retention=TIGHT,
    )
    assert [e for e, _ in r.rejected] == [late]
    assert "older than the traveller's retained history" in r.rejected[0][1]
    assert r.alerts == [] and r.stays == []


def test_duplicates_of_retained_events_are_ignored():
    who, basis = PEOPLE["UZB"]
    key = key_of(who)
    e = entry("2026-03-01 10:00", who=who, basis=basis)
    x = exit_("2026-04-05 10:00", who=who, basis=basis)
    alerts, stays, state = _arrive(key, [[e], [x], [x], [e, x]], lateness=timedelta(0))
    assert sum(a.action == AlertAction.RAISED for a in alerts) == len(final_alerts(alerts))
    assert len(stays) == 1 and len(state.history) == 2


def test_a_pending_stay_revision_survives_folding_its_history():
    """Regression: a superseded stay's revision waits for the watermark while its history is folded away;
    it must still be emitted as the next revision of what was emitted before, not as revision 0 again."""
    who, basis = PEOPLE["IND"]
    key = key_of(who)
    t0 = at("2026-05-20 08:00")
    e01 = entry(t0 + timedelta(minutes=2), who=who, basis=basis)
    e03 = entry(t0 + timedelta(minutes=4), who=who, basis=basis)
    x10 = exit_(t0 + timedelta(minutes=11), who=who, basis=basis)
    x11 = exit_(t0 + timedelta(minutes=12), who=who, basis=basis)
    x12 = exit_(t0 + timedelta(days=3, minutes=12), who=who, basis=basis)
    order = [x11, e01, x10, e03, x12]
    reference = _summary(_at_once(key, sorted(order, key=lambda e: (e.event_time, e.event_id))))
    alerts, stays, _ = _arrive(key, [[e] for e in order], lateness=timedelta(hours=6), retention=TIGHT)
    assert _summary((alerts, stays)) == reference
    first = [s for s in stays if s.entry_event_id == e01.event_id]
    assert [s.revision for s in stays if s.stay_id == first[0].stay_id] == [0, 1, 2]
