"""Every materialized view (and the views on top) against numbers computed by hand from a small dataset.

The dataset goes through the sink's writer, duplicates and re-reads included, so the views are checked the
way they are fed.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from harness import samples
from schemas.records import AlertAction, AlertType, Checkpoint, CheckpointKind, Direction, EntryBasisKind, HostKind
from schemas.records import RegistrationAction as RA
from shekara.pseudonym import pseudonymise
from tests.sinks.test_sink_transforms import Env, env  # noqa: F401 - the fixture

pytestmark = pytest.mark.integration

KORDAI = Checkpoint("KZ-KG-KORDAI", CheckpointKind.ROAD, "KGZ")
ZHIBEK = Checkpoint("KZ-UZ-ZHIBEK-ZHOLY", CheckpointKind.ROAD, "UZB")
ALA = Checkpoint("KZ-AIR-ALA", CheckpointKind.AIR, None)


def at(day: int, hour: int, month: int = 1) -> datetime:
    return datetime(2026, month, day, hour, tzinfo=UTC)


def test_daily_flows_and_monthly_balance(env: Env):  # noqa: F811
    c = samples.crossing
    records = [
        c("c1", event_time=at(10, 10), checkpoint=KORDAI, nationality="KGZ"),
        c("c2", event_time=at(10, 11), checkpoint=KORDAI, nationality="KGZ"),
        c("c3", event_time=at(10, 12), checkpoint=KORDAI, nationality="KGZ", direction=Direction.EXIT),
        c("c4", event_time=at(10, 12), checkpoint=ZHIBEK, nationality="UZB"),
        # 20:00 UTC is 01:00 the next day in Almaty (UTC+5): an 11 January crossing
        c("c5", event_time=at(10, 20), checkpoint=ZHIBEK, nationality="UZB", direction=Direction.EXIT),
        c("c6", event_time=at(11, 8), checkpoint=ALA, nationality="RUS", conveyance=None),
        c("c7", event_time=at(3, 9, month=2), checkpoint=KORDAI, nationality="KGZ", direction=Direction.EXIT),
    ]
    first = env.messages(records)
    env.write(first[:4])
    env.write(first[2:] + env.messages([records[1]]))  # a re-read from the middle, and c2 sent twice
    env.write(env.messages([records[5]]))  # c6 sent twice, later
    flows = env.client.query(
        "SELECT day, checkpoint_id, direction, nationality, sum(crossings) FROM daily_flows"
        " GROUP BY ALL HAVING sum(crossings) > 0 ORDER BY ALL"
    ).result_rows
    d10, d11 = date(2026, 1, 10), date(2026, 1, 11)
    assert flows == [
        (d10, "KZ-KG-KORDAI", "ENTRY", "KGZ", 2),
        (d10, "KZ-KG-KORDAI", "EXIT", "KGZ", 1),
        (d10, "KZ-UZ-ZHIBEK-ZHOLY", "ENTRY", "UZB", 1),
        (d11, "KZ-AIR-ALA", "ENTRY", "RUS", 1),
        (d11, "KZ-UZ-ZHIBEK-ZHOLY", "EXIT", "UZB", 1),
        (date(2026, 2, 3), "KZ-KG-KORDAI", "EXIT", "KGZ", 1),
    ]
    balance = env.client.query(
        "SELECT month, nationality, sum(entries), sum(exits), toInt64(sum(entries)) - sum(exits) FROM monthly_balance"
        " GROUP BY ALL ORDER BY ALL"
    ).result_rows
    jan, feb = date(2026, 1, 1), date(2026, 2, 1)
    assert balance == [
        (jan, "KGZ", 2, 1, 1),
        (jan, "RUS", 1, 0, 1),
        (jan, "UZB", 1, 1, 0),
        (feb, "KGZ", 0, 1, -1),
    ]


def test_stay_outcomes_open_overstays_and_dhs_rates(env: Env):  # noqa: F811
    today = datetime.now(ZoneInfo("Asia/Almaty")).date()

    def entry(days_ago: int) -> datetime:
        return datetime.combine(today - timedelta(days=days_ago), datetime.min.time(), ZoneInfo("Asia/Almaty")).replace(
            hour=10
        )

    s = samples.stay
    s1 = s("s1", 0, nationality="UZB", entry_time=entry(40))  # no exit, 30 allowed: overstaying for 11 days
    s2_open = s("s2", 0, nationality="UZB", entry_time=entry(40))
    s2 = replace(s2_open, revision=1, exit_time=entry(15), exit_event_id="x2", days_over=4)  # left 4 days late
    s3 = s("s3", 0, nationality="KGZ", entry_checkpoint="KZ-KG-KORDAI", entry_time=entry(50))
    s3 = replace(s3, exit_time=entry(25), exit_event_id="x3")  # left in time
    s4 = s("s4", 0, nationality="KGZ", entry_checkpoint="KZ-KG-KORDAI", entry_time=entry(5))  # not due yet
    s5 = s("s5", 0, nationality="RUS", entry_time=entry(100), allowed_days=None, entry_basis=EntryBasisKind.CITIZEN)
    s6_open = s("s6", 0, nationality="KGZ", entry_checkpoint="KZ-KG-KORDAI", entry_time=entry(60))
    s6 = replace(s6_open, revision=1, allowed_days=90)  # a work permit: no longer overstaying
    env.write(env.messages([s1, s2_open, s3, s5, s6_open]))
    env.write(env.messages([s2, s4, s6]))
    env.write(env.messages([s2_open]))  # stale revision, late
    outcomes = env.client.query(
        "SELECT allowed_until, nationality, entry_checkpoint, outcome, sum(stays), sum(days_over) FROM stay_outcomes"
        " GROUP BY ALL HAVING sum(stays) != 0 ORDER BY ALL"
    ).result_rows
    zh, ko = "KZ-UZ-ZHIBEK-ZHOLY", "KZ-KG-KORDAI"
    assert outcomes == sorted(
        [
            (today - timedelta(days=11), "UZB", zh, "LATE", 1, 4),
            (today - timedelta(days=11), "UZB", zh, "OPEN", 1, 0),
            (today - timedelta(days=21), "KGZ", ko, "ON_TIME", 1, 0),
            (today + timedelta(days=24), "KGZ", ko, "OPEN", 1, 0),
            (today + timedelta(days=29), "KGZ", ko, "OPEN", 1, 0),
        ]
    )
    assert env.client.query("SELECT * FROM open_overstays").result_rows == [("UZB", zh, 1, 11, 1)]  # 1 traveller
    rates = env.client.query(
        "SELECT expected_departure_month, nationality, expected_departures, out_of_country_overstays,"
        " in_country_overstays, overstay_rate_pct, in_country_rate_pct FROM overstay_rates ORDER BY ALL"
    ).result_rows
    m_uzb = (today - timedelta(days=11)).replace(day=1)
    m_kgz = (today - timedelta(days=21)).replace(day=1)
    assert rates == sorted([(m_uzb, "UZB", 2, 1, 1, 100.0, 50.0), (m_kgz, "KGZ", 1, 0, 0, 0.0, 0.0)])


def test_registration_compliance(env: Env):  # noqa: F811
    arrival = date(2026, 1, 5)  # Monday; deadline Friday 9 Jan (7 Jan is a holiday); EAEU exempt 30 days

    def filed(day: int) -> datetime:
        return datetime(2026, 1, day, 9, tzinfo=UTC)

    r = samples.registration
    r1 = r("r1", host_id="hotel-1", event_time=filed(6), valid_from=arrival)
    r2 = r("r2", host_id="hotel-1", event_time=filed(12), valid_from=arrival)  # 3 days late
    r3 = r("r3", host_id="host-2", host_kind=HostKind.PRIVATE_HOST, event_time=filed(8), valid_from=arrival)
    r4 = r("r4", host_id="hotel-1", nationality="RUS", event_time=filed(20), valid_from=arrival)
    r5 = r("r5", host_id="hotel-3", region="KZ-11", event_time=filed(9), valid_from=arrival)
    r6 = r("r6", host_id="hotel-1", action=RA.CANCELLED, registration_id="x", event_time=filed(13), valid_from=arrival)
    env.write(env.messages([r1, r2, r3]))
    env.write(env.messages([r2, r4, r5, r6]))
    key = env.settings.pseudonym_key_bytes
    rows = env.client.query(
        "SELECT month, region, host_kind, host_key, sum(registrations), sum(on_time), sum(late), sum(no_deadline),"
        " sum(days_late) FROM registration_compliance GROUP BY ALL ORDER BY ALL"
    ).result_rows
    jan = date(2026, 1, 1)
    assert rows == sorted(
        [
            (jan, "KZ-75", "HOTEL", pseudonymise("hotel-1", key, "host"), 3, 2, 1, 0, 3),
            (jan, "KZ-75", "PRIVATE_HOST", pseudonymise("host-2", key, "host"), 1, 1, 0, 0, 0),
            (jan, "KZ-11", "HOTEL", pseudonymise("hotel-3", key, "host"), 1, 1, 0, 0, 0),
        ]
    )


def test_alert_counts_and_open_alerts(env: Env):  # noqa: F811
    due = datetime(2026, 1, 10, 6, tzinfo=UTC)
    a = samples.alert
    a1 = a("a1", due_time=due)
    a1_resolved = a("a1", AlertAction.RESOLVED, due_time=due)
    a2 = a("a2", type=AlertType.WINDOW_BREACH, severity="MEDIUM", due_time=due)
    a2_retracted = a("a2", AlertAction.RETRACTED, type=AlertType.WINDOW_BREACH, severity="MEDIUM", due_time=due)
    a3 = a("a3", due_time=due + timedelta(days=1))
    env.write(env.messages([a1, a2, a3]))
    env.write(env.messages([a1_resolved, a3, a2_retracted, a1]))  # a3 and a1 sent again
    counts = env.client.query(
        "SELECT type, action, sum(alerts) FROM alert_counts GROUP BY ALL ORDER BY ALL"
    ).result_rows
    assert counts == [
        ("IN_COUNTRY_OVERSTAY", "RAISED", 2),
        ("IN_COUNTRY_OVERSTAY", "RESOLVED", 1),
        ("WINDOW_BREACH", "RAISED", 1),
        ("WINDOW_BREACH", "RETRACTED", 1),
    ]
    days = env.client.query("SELECT day, sum(alerts) FROM alert_counts GROUP BY day ORDER BY day").result_rows
    assert days == [(date(2026, 1, 10), 4), (date(2026, 1, 11), 1)]
    from sinks.analyst import saved_queries

    open_alerts = env.client.query(saved_queries()["open_alerts"].sql).result_rows
    assert [(t, s, n) for t, s, n, _ in open_alerts] == [("IN_COUNTRY_OVERSTAY", "HIGH", 1)]


def test_an_alert_retracted_and_raised_again_is_open_once_and_its_latest_fields_win(env: Env) -> None:  # noqa: F811
    # Late data moved the due time past the watermark (RETRACTED r1), then the new due time came (RAISED r2, same
    # id); each record in a batch of its own, then a replay: the first batches re-read under new offsets, and r2
    # emitted again by processors restarted after a crash (their wall clock differs, the revision does not).
    due, later = datetime(2026, 1, 10, 6, tzinfo=UTC), datetime(2026, 1, 24, 6, tzinfo=UTC)
    a = samples.alert
    r0 = a("moved", due_time=due, revision=0, days_overstayed=1)
    r1 = a("moved", AlertAction.RETRACTED, due_time=due, revision=1, emitted_time=r0.emitted_time + timedelta(hours=1))
    r2 = a("moved", due_time=later, revision=2, days_overstayed=3, emitted_time=later + timedelta(minutes=1))
    # corrected figures: the same RAISED again with the next revision; and a resolved alert that stays closed
    c0 = a("fixed", due_time=due, revision=0, days_overstayed=2, evidence_event_ids=["e1"])
    c1 = replace(c0, revision=1, days_overstayed=5, evidence_event_ids=["e1", "e2"])
    s0 = a("shut", due_time=due, revision=0)
    s1 = a("shut", AlertAction.RESOLVED, due_time=due, revision=1)
    batches = [[r0, c0, s0], [r1, c1, s1], [r2]]
    for records in batches:
        env.write(env.messages(records))
    stored = env.scalar("SELECT count() FROM alerts")
    env.write(env.messages([r for records in batches[:2] for r in records]))  # the sink re-reads old offsets
    env.write(env.messages([replace(r2, emitted_time=r2.emitted_time + timedelta(hours=2))]))  # re-emitted
    assert stored == 7 and env.scalar("SELECT count() FROM alerts") == 7  # every record once, none lost
    states = env.client.query(
        "SELECT alert_id, action, revision, due_time, days_overstayed, evidence_event_ids, records"
        " FROM alert_states ORDER BY alert_id"
    ).result_rows
    assert [(i, act, rev, d.replace(tzinfo=UTC), n, ev, k) for i, act, rev, d, n, ev, k in states] == [
        ("fixed", "RAISED", 1, due, 5, ["e1", "e2"], 2),
        ("moved", "RAISED", 2, later, 3, ["e1"], 3),
        ("shut", "RESOLVED", 1, due, None, ["e1"], 2),
    ]
    from sinks.analyst import saved_queries

    open_alerts = env.client.query(saved_queries()["open_alerts"].sql).result_rows
    assert [(t, s, n) for t, s, n, _ in open_alerts] == [("IN_COUNTRY_OVERSTAY", "HIGH", 2)]
    triage = env.client.query("SELECT alert_id, due_time, raised_time FROM open_alerts_triage ORDER BY alert_id")
    assert [(i, d.replace(tzinfo=UTC), r.replace(tzinfo=UTC)) for i, d, r in triage.result_rows] == [
        ("fixed", due, c0.emitted_time),
        ("moved", later, r0.emitted_time),  # first raised
    ]


def test_alerts_stored_before_revisions_keep_their_meaning(env: Env) -> None:  # noqa: F811
    # v1 records all read revision 0: a RESOLVED or RETRACTED row after the RAISED one ends the alert, as before.
    due = datetime(2026, 1, 10, 6, tzinfo=UTC)
    a = samples.alert
    raised = [a(i, due_time=due) for i in ("open", "resolved", "retracted")]
    ended = [a("resolved", AlertAction.RESOLVED, due_time=due), a("retracted", AlertAction.RETRACTED, due_time=due)]
    env.write(env.messages(raised + ended))  # RAISED and RESOLVED in one step share their emitted_time
    env.write(env.messages(raised))  # re-read: stored once
    assert env.scalar("SELECT count() FROM alerts") == 5
    states = env.client.query("SELECT alert_id, action, revision FROM alert_states ORDER BY alert_id").result_rows
    assert states == [("open", "RAISED", 0), ("resolved", "RESOLVED", 0), ("retracted", "RETRACTED", 0)]
    assert env.client.query("SELECT alert_id FROM open_alerts_triage").result_rows == [("open",)]
