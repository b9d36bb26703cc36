"""Injected anomalies: journeys planned to break one rule, each tagged with its anomaly in the ground truth.

A builder returns the journeys it planned; the generator computes their expected alerts with `truth`
(so side effects the spec defines - a late exit is also an in-country overstay, a transit overstayer past
30 days also overstays - come out of the rules, not out of this file). `span_days` says how many days from
the start of an anomaly its alerts take to fall due, so the minimum count can be placed where it completes.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from harness.simulator.behaviours import (
    HOUR,
    LAND_ROUTES,
    every_day_trader,
    finish,
    hour_pick_for,
    hours_air,
    hours_land,
    hours_office,
    stay_events,
    transit_plan,
    visit_exit_time,
)
from harness.simulator.catalogue import Post
from harness.simulator.plan import Person, Planned, PlannedRegistration
from harness.simulator.world import CITIZEN, ONE_DAY, VISA_FREE, Journey, World
from schemas.records import Direction, EntryBasis, EntryBasisKind, HostKind, Purpose, StatusChangeKind
from shekara.reference import distance_km


@dataclass(slots=True)
class Injected:
    journeys: list[Journey]
    address_check: bool = False  # the journeys' registrations crowd one address (Step 7)


# Nationalities with a 30-day (or visa) per-entry limit and a 3-working-day registration deadline.
SHORT_LIMIT = ("UZB", "TJK", "TUR", "CHN", "AZE", "IND", "AFG", "GEO")
LAND_FRIENDLY = ("UZB", "TJK", "KGZ", "RUS")


def _post_for(w: World, rng: random.Random, nat: str) -> tuple[Post, str]:
    group = "AIR" if nat in ("IND", "TUR", "GEO") else rng.choice(LAND_ROUTES.get(nat, ("AIR",)))
    return w.catalogue.picker(group)(rng), group


@dataclass(frozen=True, slots=True)
class Arrival:
    """A visitor arriving: who, where, when, on what basis, and the last day they may stay."""

    person: Person
    post: Post
    group: str
    entry_t: datetime
    basis: EntryBasis
    last: date


def _visitor(w: World, rng: random.Random, day: date, nat: str, profile: str = "land_visitor") -> Arrival:
    person = w.people.make(rng, nat, profile)
    post, group = _post_for(w, rng, nat)
    entry_t = w.at(day, hour_pick_for(post)(rng))
    e = w.local(entry_t)
    basis = w.visa_free_basis(nat, e, rng, days=30)
    last = w.last_allowed_day(nat, basis, e)
    assert last is not None
    return Arrival(person, post, group, entry_t, basis, last)


def in_country_overstay(w: World, rng: random.Random, day: date) -> Injected:
    """Registered on time, but never leaves: the allowed stay runs out while inside."""
    a = _visitor(w, rng, day, rng.choice(SHORT_LIMIT))
    events = stay_events(w, rng, a.person, a.post, a.entry_t, None, purpose=Purpose.PRIVATE, basis=a.basis)
    return _one(w, events, "in_country_overstay")


def late_exit(w: World, rng: random.Random, day: date) -> Injected:
    """Leaves after the allowed stay: often minutes after midnight of the first day too many."""
    a = _visitor(w, rng, day, rng.choice(SHORT_LIMIT))
    if rng.random() < 0.4:
        exit_t = w.at(a.last + ONE_DAY, rng.uniform(300, 3 * HOUR))
    else:
        exit_t = w.at(a.last + timedelta(days=rng.randint(2, 20)), hour_pick_for(a.post)(rng))
    events = stay_events(
        w, rng, a.person, a.post, a.entry_t, exit_t, purpose=Purpose.TOURISM, basis=a.basis, exit_group=a.group
    )
    return _one(w, events, "late_exit")


def _visa_run_plan(w: World, nat: str, day: date) -> tuple[int, int, int] | None:
    """(nights per stay, full stays, breach day within the next stay) for repeated short stays of `nat`."""
    row = w.rules.stay_limit(nat, EntryBasisKind.VISA_FREE, day)
    if not row.has_window or not row.per_entry_days or row.window_limit_days is None:
        return None
    limit, per_entry = row.window_limit_days, row.per_entry_days
    for days_per_stay in range(per_entry - 1, 1, -1):
        full = limit // days_per_stay
        breach_day = limit - full * days_per_stay + 1  # day of the next stay on which the count exceeds the limit
        if breach_day >= 2:  # never on the entry day itself
            return days_per_stay - 1, full, breach_day
    return None


def window_span(w: World, nat: str, day: date) -> int:
    plan = _visa_run_plan(w, nat, day)
    if plan is None:
        return 10**6
    nights, full, breach_day = plan
    return full * (nights + 2) + breach_day + 1


VISA_RUNNERS = ("IND", "IRN", "UZB", "TJK", "TUR", "CHN", "RUS", "KGZ")


# Frequent crossers who trade every day, and the road post they use: neighbours at their own border, and the
# short-stay nationals (42 in 180, the only limit a run shorter than 91 days can see passed) at the Khorgos
# free-trade zone on the Chinese border.
DAILY_TRADERS = {
    "UZB": "KZ-UZ-ZHIBEK-ZHOLY",
    "KGZ": "KZ-KG-KORDAI",
    "CHN": "KZ-CN-KHORGOS",
    "IND": "KZ-CN-KHORGOS",
    "IRN": "KZ-CN-KHORGOS",
}


def _trader_days(w: World, nat: str, day: date) -> int | None:
    """Day trips in a row that pass the rolling window's limit (the last one is the breach), or None."""
    row = w.rules.stay_limit(nat, EntryBasisKind.VISA_FREE, day)
    return row.window_limit_days + 1 if row.has_window and row.window_limit_days else None


def _daily_trader(w: World, rng: random.Random, day: date, left: int) -> Injected | None:
    """A day trip every day until days present pass the limit, and a few more inside the same breach episode:
    one WINDOW_BREACH, due at the entry on the breach day (docs/alerts.md, Step 4). None when none fits."""
    fitting = [(n, k) for n in DAILY_TRADERS if (k := _trader_days(w, n, day)) is not None and k + 6 <= left]
    if not fitting:
        return None
    nat, days = rng.choice(fitting)
    post = w.catalogue.by_id.get(DAILY_TRADERS[nat])
    if post is None:
        return None
    events = every_day_trader(w, rng, nat, post, day, days + rng.randint(1, 5))
    return _one(w, events, "window_breach")


def window_breach(w: World, rng: random.Random, day: date) -> Injected:
    """Visa runs: each stay is legal, but days present in 180 exceed the limit (the shortest plan that fits); or,
    half the time when the period leaves room, a daily trader who passes the limit."""
    left = (w.last_day - day).days + 1
    trader = _daily_trader(w, rng, day, left) if rng.random() < 0.5 else None
    if trader is not None:
        return trader
    fitting = [n for n in VISA_RUNNERS if window_span(w, n, day) <= left]
    nat = rng.choice(fitting) if fitting else min(VISA_RUNNERS, key=lambda n: window_span(w, n, day))
    plan = _visa_run_plan(w, nat, day)
    if plan is None:
        return Injected([])
    nights, full, breach_day = plan
    person = w.people.make(rng, nat, "air_visitor")
    post = w.catalogue.picker("AIR" if nat in ("IND", "IRN", "TUR") else LAND_ROUTES.get(nat, ("AIR",))[0])(rng)
    hours = hour_pick_for(post)
    events: list[Planned] = []
    d = day
    for i in range(full + 1):
        entry_t = w.at(d, hours(rng))
        stay = nights if i < full else breach_day - 1 + rng.randint(0, max(0, nights - breach_day))
        exit_t = visit_exit_time(w, rng, entry_t, stay, hours)
        events += stay_events(w, rng, person, post, entry_t, exit_t, purpose=Purpose.TOURISM, basis=VISA_FREE)
        d = w.local(exit_t) + timedelta(days=2)  # one day abroad, then back
    return _one(w, events, "window_breach")


def unregistered_stay(w: World, rng: random.Random, day: date) -> Injected:
    """Nobody registers the guest (or too late, or not again after moving), and the guest is still there."""
    u = rng.random()
    eaeu = w.rules.registration_rule("RUS", EntryBasisKind.VISA_FREE, Purpose.PRIVATE, day)
    if u < 0.15 and eaeu is not None and eaeu.reregister_working_days:
        return _not_reregistered(w, rng, day)
    nat = "RUS" if u < 0.3 else rng.choice(("UZB", "TJK", "CHN", "AZE", "TUR"))
    a = _visitor(w, rng, day, nat)
    due = w.registration_due(nat, a.basis, Purpose.PRIVATE, a.entry_t)
    assert due is not None
    leave_by = w.day_start(a.last) + timedelta(hours=20)
    exit_t = min(due + timedelta(seconds=rng.uniform(HOUR, 8 * 24 * HOUR)), leave_by)
    events = stay_events(
        w, rng, a.person, a.post, a.entry_t, exit_t, purpose=Purpose.PRIVATE, basis=a.basis, register=False
    )
    if rng.random() < 0.35:  # registered, but after the deadline
        late = due + timedelta(seconds=rng.uniform(300, 30 * HOUR))
        if late < exit_t:
            vf, vu = w.local(a.entry_t), w.local(exit_t)
            region = w.hosts.region_for(rng, a.post.info.region)
            host = w.hosts.tracked(rng, HostKind.PRIVATE_HOST, region, vf, vu)
            events.append(w.register(late, a.person, host, vf, vu))
    return _one(w, events, "unregistered_stay")


def _not_reregistered(w: World, rng: random.Random, day: date) -> Injected:
    """A 90-day national under the self-registration rule moves out and never registers the new address."""
    a = _visitor(w, rng, day, rng.choice(("RUS", "KGZ")))
    due = w.registration_due(a.person.nationality, a.basis, Purpose.PRIVATE, a.entry_t)
    assert due is not None
    move = due + timedelta(days=rng.uniform(1, 8))
    exit_t = min(move + timedelta(days=rng.uniform(12, 20)), w.day_start(a.last) + timedelta(hours=18))
    events = stay_events(w, rng, a.person, a.post, a.entry_t, exit_t, purpose=Purpose.PRIVATE, basis=a.basis)
    regs = [e for e in events if isinstance(e, PlannedRegistration)]
    if regs:
        events.append(w.cancel(move, regs[0]))
    return _one(w, events, "unregistered_stay")


def transit_overstay(w: World, rng: random.Random, day: date) -> Injected:
    """Declared transit, but still inside after the transit window (some past the stay limit too)."""
    nat = rng.choice(("UZB", "TJK", "UZB", "KGZ"))
    plan = transit_plan(w, rng, nat, day)
    if plan is None:
        return Injected([])
    entry_post, exit_post, dest, entry_t, _ = plan
    rule = w.rules.transit_rule(day)
    assert rule is not None
    person = w.people.make(rng, nat, "transit")
    basis = VISA_FREE
    e = w.local(entry_t)
    last = w.last_allowed_day(nat, basis, e)
    assert last is not None
    u = rng.random()
    exit_t: datetime | None
    if u < 0.15:
        exit_t = None  # stays on
    elif u < 0.35 and nat != "KGZ":
        exit_t = w.at(last + timedelta(days=rng.randint(1, 10)), hours_land(rng))
    else:
        exit_t = entry_t + timedelta(hours=rule.window_hours) + timedelta(seconds=rng.uniform(6 * HOUR, 15 * 24 * HOUR))
        exit_t = min(exit_t, w.day_start(last) + timedelta(hours=18))
    conv = w.conveyance(rng, entry_post)
    events: list[Planned] = [
        w.cross(
            entry_t,
            person,
            entry_post,
            Direction.ENTRY,
            Purpose.TRANSIT,
            basis,
            conv,
            destination=dest,
            planned_exit=exit_post.id,
        )
    ]
    if exit_t is not None:
        events.append(
            w.cross(exit_t, person, exit_post, Direction.EXIT, Purpose.TRANSIT, basis, conv, destination=dest)
        )
    return _one(w, events, "transit_overstay")


def wrong_route_exit(w: World, rng: random.Random, day: date) -> Injected:
    """Declared transit to Russia (or China), but leaves in time through a post not on that route."""
    nat = rng.choice(("UZB", "TJK", "KGZ"))
    plan = transit_plan(w, rng, nat, day)
    if plan is None:
        return Injected([])
    entry_post, declared_exit, dest, entry_t, _ = plan
    rule = w.rules.transit_rule(day)
    assert rule is not None
    allowed = set(rule.routes.get(dest, frozenset())) | {declared_exit.id}
    window_s = rule.window_hours * HOUR - 6 * HOUR
    options = [
        p
        for p in w.catalogue.group("LAND", "AIR")
        if p.id not in allowed and p.id != entry_post.id and w.catalogue.feasible_seconds(entry_post, p) < window_s
    ]
    if not options:
        return Injected([])
    exit_post = rng.choice(options)
    least = w.catalogue.feasible_seconds(entry_post, exit_post) * 1.1
    exit_t = entry_t + timedelta(seconds=least + (window_s - least) * rng.random())
    person = w.people.make(rng, nat, "transit")
    conv = w.conveyance(rng, entry_post)
    events: list[Planned] = [
        w.cross(
            entry_t,
            person,
            entry_post,
            Direction.ENTRY,
            Purpose.TRANSIT,
            VISA_FREE,
            conv,
            destination=dest,
            planned_exit=declared_exit.id,
        ),
        w.cross(exit_t, person, exit_post, Direction.EXIT, Purpose.TRANSIT, VISA_FREE, None, destination=dest),
    ]
    return _one(w, events, "wrong_route_exit")


def exit_without_entry(w: World, rng: random.Random, day: date) -> Injected:
    """An exit of a foreigner whose entry was never recorded (a data gap at the post, or an illegal crossing)."""
    nat = rng.choice(LAND_FRIENDLY)
    person = w.people.make(rng, nat, "land_visitor")
    post = w.catalogue.picker(LAND_ROUTES[nat][0])(rng)
    t = w.at(day, hours_land(rng))
    purpose = rng.choice((Purpose.PRIVATE, Purpose.WORK, Purpose.BUSINESS))
    events: list[Planned] = [w.cross(t, person, post, Direction.EXIT, purpose, VISA_FREE, w.conveyance(rng, post))]
    return _one(w, events, "exit_without_entry")


def double_entry(w: World, rng: random.Random, day: date) -> Injected:
    """A second entry while a stay is open: a missed exit (data gap) or the same passport scanned twice."""
    nat = rng.choice(("UZB", "RUS", "KGZ", "TJK", "CHN"))
    a = _visitor(w, rng, day, nat)
    events: list[Planned] = stay_events(
        w, rng, a.person, a.post, a.entry_t, None, purpose=Purpose.PRIVATE, basis=a.basis
    )
    if rng.random() < 0.35:
        second_t = a.entry_t + timedelta(seconds=rng.uniform(120, 1800))
        second_post = a.post
    else:
        gap_days = rng.randint(3, 12)
        second_t = w.at(w.local(a.entry_t) + timedelta(days=gap_days), hour_pick_for(a.post)(rng))
        cand = w.catalogue.picker(a.group)(rng)
        second_post = (
            cand if w.catalogue.feasible_seconds(a.post, cand) < (second_t - a.entry_t).total_seconds() else a.post
        )
    second_last = w.last_allowed_day(nat, a.basis, w.local(second_t))
    assert second_last is not None
    nights = rng.randint(1, 10)
    exit_t = visit_exit_time(w, rng, second_t, nights, hour_pick_for(second_post))
    exit_t = min(exit_t, w.day_start(second_last) + timedelta(hours=18))
    events += stay_events(w, rng, a.person, second_post, second_t, exit_t, purpose=Purpose.PRIVATE, basis=a.basis)
    return _one(w, events, "double_entry")


def impossible_travel(w: World, rng: random.Random, day: date) -> Injected:
    """A cloned document: the same passport at two posts faster than anyone can travel between them."""
    if rng.random() < 0.6:
        nat = rng.choice(("RUS", "TUR", "UZB", "CHN"))
        person = w.people.make(rng, nat, "air_visitor")
        post = w.catalogue.picker("AIR")(rng)
        entry_t = w.at(day, hours_air(rng))
        exit_t = visit_exit_time(w, rng, entry_t, rng.randint(3, 10), hours_air)
        events = stay_events(w, rng, person, post, entry_t, exit_t, purpose=Purpose.TOURISM, basis=VISA_FREE)
        clone_basis, clone_purpose = VISA_FREE, Purpose.PRIVATE
        first_t = entry_t
    else:
        person = w.people.make(rng, "KAZ", "citizen")
        post = w.catalogue.picker("UZB" if rng.random() < 0.5 else "KGZ")(rng)
        first_t = w.at(day, hours_land(rng))
        back_t = w.at(day + timedelta(days=rng.randint(2, 10)), hours_land(rng))
        events = [
            w.cross(first_t, person, post, Direction.EXIT, Purpose.PRIVATE, CITIZEN, w.conveyance(rng, post)),
            w.cross(back_t, person, post, Direction.ENTRY, Purpose.PRIVATE, CITIZEN, None),
        ]
        clone_basis, clone_purpose = CITIZEN, Purpose.BUSINESS
    far = [p for p in w.catalogue.posts if distance_km(p.info, post.info) > 400]
    clone_post = rng.choice(far)
    clone_t = first_t + timedelta(seconds=w.catalogue.min_travel_seconds(post, clone_post) * rng.uniform(0.15, 0.6))
    direction = Direction.ENTRY if rng.random() < 0.5 else Direction.EXIT
    events.append(w.cross(clone_t, person, clone_post, direction, clone_purpose, clone_basis, None))
    return _one(w, events, "impossible_travel")


def banned_entry(w: World, rng: random.Random, day: date) -> Injected:
    """Expelled with a five-year ban during a first stay, deported, and back on the same passport weeks later.
    Half the expulsion orders give no end date: the rules' default ban (docs/alerts.md, Step 6)."""
    nat = rng.choice(("UZB", "TJK", "AFG", "TUR", "AZE"))
    a = _visitor(w, rng, day, nat)
    leave_t = visit_exit_time(w, rng, a.entry_t, rng.randint(3, 9), hour_pick_for(a.post))
    events: list[Planned] = stay_events(
        w, rng, a.person, a.post, a.entry_t, leave_t, purpose=Purpose.WORK, basis=a.basis
    )
    expelled_t = leave_t - timedelta(seconds=rng.uniform(2 * HOUR, 40 * HOUR))
    if expelled_t <= a.entry_t + timedelta(hours=2):
        expelled_t = a.entry_t + (leave_t - a.entry_t) / 2
    d = w.local(expelled_t)
    years = w.rules.ban.default_ban_years
    # Half the orders name no end date (the rules' default ban applies), some of those no start date either.
    u = rng.random()
    ban_end = None if u < 0.5 else d + timedelta(days=365 * years + years // 4)
    start = None if u < 0.2 else d
    events.append(w.status(expelled_t, a.person, StatusChangeKind.EXPELLED, valid_from=start, valid_until=ban_end))
    back_day = w.local(leave_t) + timedelta(days=rng.randint(7, 30))
    back_post = w.catalogue.picker(a.group)(rng)
    back_t = w.at(back_day, hour_pick_for(back_post)(rng))
    e2 = w.local(back_t)
    basis2 = w.visa_free_basis(nat, e2, rng, days=30)
    out_t = visit_exit_time(w, rng, back_t, rng.randint(2, 8), hour_pick_for(back_post))
    events += stay_events(w, rng, a.person, back_post, back_t, out_t, purpose=Purpose.PRIVATE, basis=basis2)
    return _one(w, events, "banned_entry")


def lost_stolen_document(w: World, rng: random.Random, day: date) -> Injected:
    """Crossings on a document on the watch list: an impostor on a stolen passport, or a 'lost' one used."""
    if rng.random() < 0.5:
        person = w.people.make(rng, "KAZ", "citizen")
        reported = w.at(day, hours_office(rng))
        events: list[Planned] = [w.status(reported, person, StatusChangeKind.DOCUMENT_STOLEN)]
        post = w.catalogue.picker(rng.choice(("UZB", "KGZ", "RUS", "CHN")))(rng)
        out_t = w.at(day + timedelta(days=rng.randint(1, 10)), hours_land(rng))
        events.append(w.cross(out_t, person, post, Direction.EXIT, Purpose.BUSINESS, CITIZEN, w.conveyance(rng, post)))
        if rng.random() < 0.5:
            back_t = out_t + timedelta(days=rng.uniform(1, 5))
            events.append(w.cross(back_t, person, post, Direction.ENTRY, Purpose.BUSINESS, CITIZEN, None))
        return _one(w, events, "lost_stolen_document")
    a = _visitor(w, rng, day, rng.choice(("RUS", "UZB", "KGZ", "CHN")))
    exit_t = visit_exit_time(w, rng, a.entry_t, rng.randint(4, 12), hour_pick_for(a.post))
    events = stay_events(w, rng, a.person, a.post, a.entry_t, exit_t, purpose=Purpose.TOURISM, basis=a.basis)
    lost_t = a.entry_t + (exit_t - a.entry_t) * rng.uniform(0.3, 0.8)
    events.append(w.status(lost_t, a.person, StatusChangeKind.DOCUMENT_LOST))
    return _one(w, events, "lost_stolen_document")


def fictitious_address(w: World, rng: random.Random, day: date) -> Injected:
    """A 'rubber flat': more foreigners registered at one private address than the threshold allows."""
    threshold = w.rules.address.threshold.get(HostKind.PRIVATE_HOST.value, 10)
    region = rng.choice(("KZ-75", "KZ-71", "KZ-79", "KZ-61"))
    host = w.hosts.fresh_private(region)
    journeys: list[Journey] = []
    for i in range(threshold + rng.randint(1, 5)):
        nat = rng.choice(("UZB", "TJK", "KGZ", "UZB"))
        person = w.people.make(rng, nat, "seasonal_worker")
        post = w.catalogue.picker(LAND_ROUTES[nat][0])(rng)
        entry_t = w.at(day + timedelta(days=i % 2), hours_land(rng))
        exit_t = visit_exit_time(w, rng, entry_t, rng.randint(7, 20), hours_land)
        events = stay_events(w, rng, person, post, entry_t, exit_t, purpose=Purpose.WORK, basis=VISA_FREE, host=host)
        j = finish(w, events, "fictitious_address")
        if j is not None:
            journeys.append(j)
    return Injected(journeys, address_check=True)


def renewed_passport(w: World, rng: random.Random, day: date) -> Injected:
    """A passport renewed at the consulate: the holder goes on, on the new number (docs/alerts.md, "Renewed
    documents"). During a stay: leaves in time on the new passport (no alert: the old passport's entry matches the
    exit), leaves late (out-of-country overstay), or stays on (the in-country overstay follows the person). Between
    two stays: back on the new passport, each stay within its limit (days present count over both)."""
    a = _visitor(w, rng, day, rng.choice(SHORT_LIMIT))
    new = w.people.renewed(a.person)
    hours = hour_pick_for(a.post)
    allowed = (a.last - w.local(a.entry_t)).days  # nights up to the last allowed day
    u = rng.random()
    if u < 0.25:  # two stays, renewed abroad in between
        out_t = visit_exit_time(w, rng, a.entry_t, rng.randint(3, 8), hours)
        renew_t = w.at(w.local(out_t) + timedelta(days=rng.randint(2, 6)), hours_office(rng))
        back_t = w.at(w.local(renew_t) + timedelta(days=rng.randint(3, 10)), hours(rng))
        back_exit = visit_exit_time(w, rng, back_t, rng.randint(3, 8), hours)
        events = stay_events(w, rng, a.person, a.post, a.entry_t, out_t, purpose=Purpose.TOURISM, basis=a.basis)
        events += stay_events(w, rng, new, a.post, back_t, back_exit, purpose=Purpose.TOURISM, basis=a.basis)
        events.append(w.status(renew_t, a.person, StatusChangeKind.DOCUMENT_REPLACED, new_person=new))
        return _one(w, events, "renewed_passport")
    exit_t: datetime | None = None  # stays on
    if u < 0.5:
        nights = rng.randint(min(max(8, allowed - 8), allowed), allowed)  # leaves in time, after the renewal
        exit_t = visit_exit_time(w, rng, a.entry_t, nights, hours)
    elif u < 0.75:
        exit_t = w.at(a.last + timedelta(days=rng.randint(2, 15)), hours(rng))
    events = stay_events(w, rng, a.person, a.post, a.entry_t, exit_t, purpose=Purpose.TOURISM, basis=a.basis)
    # At the consulate a few days after the registration was filed, well before the stay ends
    renew_day = w.local(a.entry_t) + timedelta(days=rng.randint(5, 7))
    renew_t = w.at(renew_day, hours_office(rng))
    for ev in events:
        if ev.time > renew_t:
            ev.person = new  # from then on every record carries the new passport
    events.append(w.status(renew_t, a.person, StatusChangeKind.DOCUMENT_REPLACED, new_person=new))
    return _one(w, events, "renewed_passport")


def _one(w: World, events: list[Planned], anomaly: str) -> Injected:
    j = finish(w, events, anomaly)
    return Injected([] if j is None else [j])


Anomaly = Callable[[World, random.Random, date], Injected]
ANOMALIES: dict[str, Anomaly] = {
    "in_country_overstay": in_country_overstay,
    "late_exit": late_exit,
    "window_breach": window_breach,
    "unregistered_stay": unregistered_stay,
    "transit_overstay": transit_overstay,
    "wrong_route_exit": wrong_route_exit,
    "exit_without_entry": exit_without_entry,
    "double_entry": double_entry,
    "impossible_travel": impossible_travel,
    "banned_entry": banned_entry,
    "lost_stolen_document": lost_stolen_document,
    "fictitious_address": fictitious_address,
    "renewed_passport": renewed_passport,
}


def span_days(w: World, name: str, day: date) -> int:
    """Days from an anomaly's start until its alerts are due (for placing the guaranteed minimum)."""
    if name == "window_breach":
        return min(window_span(w, n, day) for n in VISA_RUNNERS)
    return _SPAN.get(name, 2)


_SPAN = {
    "in_country_overstay": 33,
    "late_exit": 52,
    "unregistered_stay": 40,
    "transit_overstay": 8,
    "wrong_route_exit": 6,
    "double_entry": 14,
    "banned_entry": 42,
    "lost_stolen_document": 12,
    "fictitious_address": 6,
    "renewed_passport": 40,
}
