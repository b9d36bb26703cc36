"""Normal traffic: journeys designed never to trigger an alert of docs/alerts.md.

Every foreigner who exits entered inside the period; stays end before the per-entry limit and, in one
stay, far below the rolling-window limit; anybody who must register is registered before the deadline
(some at the last minute, on both sides of midnight); work permits and visa extensions come in time;
consecutive crossings at different posts are slower than the impossible-travel speeds with a margin;
private hosts and employers stay under half their crowding threshold (see `hosts`).
Event times follow local-hour profiles, so they fall on both sides of UTC and local midnight, on weekends
and on holidays. `tests/harness/simulator` recomputes the truth over the whole stream and checks normal traffic
yields no alert.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import date, datetime, timedelta
from operator import attrgetter

from harness.simulator.catalogue import Pick, Post
from harness.simulator.hosts import Host
from harness.simulator.plan import Person, Planned, PlannedRegistration
from harness.simulator.population import (
    HOURS_AIR,
    HOURS_LAND,
    HOURS_OFFICE,
    HOURS_TRADER_IN,
    HOURS_TRADER_OUT,
    HourPick,
)
from harness.simulator.rand import pick, ri
from harness.simulator.world import CITIZEN, DIPLOMAT, ONE_DAY, RESIDENT, VISA_FREE, Journey, World
from schemas.records import (
    CheckpointKind,
    Conveyance,
    Direction,
    DocumentType,
    EntryBasis,
    EntryBasisKind,
    HostKind,
    Purpose,
    StatusChangeKind,
)

HOUR = 3600.0
_TIME = attrgetter("time")
hours_land = HourPick(HOURS_LAND)
hours_air = HourPick(HOURS_AIR)
hours_trader_in = HourPick(HOURS_TRADER_IN)
hours_trader_out = HourPick(HOURS_TRADER_OUT)
hours_office = HourPick(HOURS_OFFICE)

# Where foreigners of each nationality cross by land (border countries of the posts, or SEA).
LAND_ROUTES: dict[str, tuple[str, ...]] = {
    "RUS": ("RUS",),
    "BLR": ("RUS",),
    "ARM": ("RUS",),
    "UKR": ("RUS",),
    "MDA": ("RUS",),
    "GEO": ("RUS",),
    "MNG": ("RUS",),
    "TUR": ("RUS", "UZB"),
    "UZB": ("UZB",),
    "TJK": ("UZB", "KGZ"),
    "AFG": ("UZB",),
    "KGZ": ("KGZ",),
    "CHN": ("CHN",),
    "TKM": ("TKM", "UZB"),
    "AZE": ("SEA", "RUS"),
}
CITIZEN_MODES = Pick(["RUS", "UZB", "KGZ", "CHN", "TKM", "AIR", "SEA"], [0.33, 0.17, 0.20, 0.05, 0.01, 0.23, 0.01])
CITIZEN_PURPOSES = Pick(
    [Purpose.PRIVATE, Purpose.TOURISM, Purpose.BUSINESS, Purpose.WORK, Purpose.STUDY], [40, 30, 18, 9, 3]
)
VISITOR_PURPOSES = Pick(
    [Purpose.PRIVATE, Purpose.TOURISM, Purpose.BUSINESS, Purpose.WORK, Purpose.STUDY], [42, 27, 20, 7, 4]
)
AIR_PURPOSES = Pick([Purpose.TOURISM, Purpose.BUSINESS, Purpose.PRIVATE, Purpose.STUDY], [45, 33, 18, 4])
MAX_TRIP_DAYS = 120


def _trip_length_weights() -> list[float]:
    """Citizens' and residents' trips abroad, in nights: same-day trips to long stays with family."""
    w = [0.0] * (MAX_TRIP_DAYS + 1)
    w[0] = 15.0
    for lo, hi, mass in ((1, 3, 25.0), (4, 10, 30.0), (11, 30, 22.0), (31, MAX_TRIP_DAYS, 8.0)):
        for n in range(lo, hi + 1):
            w[n] = mass / (hi - lo + 1)
    return w


TRIP_LENGTHS = _trip_length_weights()
TRIP_LENGTH_PICK = Pick(list(range(MAX_TRIP_DAYS + 1)), TRIP_LENGTHS)


_AT_LEAST = [Pick(list(range(k, MAX_TRIP_DAYS + 1)), TRIP_LENGTHS[k:]) for k in range(MAX_TRIP_DAYS + 1)]


def trip_length_at_least(rng: random.Random, k: int) -> int:
    """A trip length drawn from TRIP_LENGTHS given that it is at least `k` nights (warm-up trips)."""
    return int(_AT_LEAST[min(k, MAX_TRIP_DAYS)](rng))


def share_of_trips_at_least(k: int) -> float:
    return sum(TRIP_LENGTHS[k:]) / sum(TRIP_LENGTHS)


def finish(w: World, events: list[Planned], anomaly: str | None = None) -> Journey | None:
    """Time-order a journey and drop what falls after the period (it never happens, as far as we know)."""
    end = w.end
    kept = [e for e in events if e.time < end]
    if not kept:
        return None
    kept.sort(key=_TIME)
    return Journey(kept, anomaly)


def hour_pick_for(post: Post) -> HourPick:
    return hours_air if post.info.kind == CheckpointKind.AIR else hours_land


def other_post(w: World, rng: random.Random, post: Post, group: str, gap_s: float, p_same: float = 0.75) -> Post:
    """The post someone leaves or returns through: usually the same, else one reachable in `gap_s` seconds."""
    if rng.random() < p_same:
        return post
    cand = w.catalogue.picker(group)(rng)
    if w.catalogue.feasible_seconds(post, cand) <= gap_s:
        return cand
    return post


# --- citizens and residents ------------------------------------------------------------------------------------


def _round_trip_abroad(
    w: World,
    rng: random.Random,
    person: Person,
    day: date,
    nights: int,
    mode: str,
    basis: EntryBasis,
    purpose: Purpose,
) -> list[Planned]:
    """Leave on `day`, come back `nights` later (both crossings; the caller drops those before the period)."""
    post = w.catalogue.picker(mode)(rng)
    hours = hour_pick_for(post)
    out_t = w.at(day, hours(rng))
    if nights == 0:
        back_t = out_t + timedelta(seconds=rng.uniform(2 * HOUR, 12 * HOUR))
    else:
        back_t = w.at(day + timedelta(days=nights), hours(rng))
        if back_t <= out_t + timedelta(hours=2):
            back_t = out_t + timedelta(hours=rng.uniform(2, 10))
    back_post = other_post(w, rng, post, mode, (back_t - out_t).total_seconds())
    conv = w.conveyance(rng, post)
    return [
        w.cross(out_t, person, post, Direction.EXIT, purpose, basis, conv),
        w.cross(back_t, person, back_post, Direction.ENTRY, purpose, basis, conv if back_post is post else None),
    ]


def citizen_trip(w: World, rng: random.Random, day: date, started: date | None = None) -> Journey | None:
    """A citizen of Kazakhstan abroad and back. `started` (before the period) gives a trip already under way."""
    mode = str(CITIZEN_MODES(rng))
    doc = DocumentType.ID_CARD if mode in ("RUS", "KGZ") and rng.random() < 0.4 else DocumentType.PASSPORT
    person = w.people.make(rng, "KAZ", "citizen", doc)
    purpose = CITIZEN_PURPOSES(rng)
    if started is None:
        nights = int(TRIP_LENGTH_PICK(rng))
        events = _round_trip_abroad(w, rng, person, day, nights, mode, CITIZEN, purpose)
    else:
        nights = trip_length_at_least(rng, (w.start - started).days)
        events = _round_trip_abroad(w, rng, person, started, nights, mode, CITIZEN, purpose)
        events = [e for e in events if e.time >= w.begin]
    return finish(w, events)


RESIDENT_MODES: dict[str, tuple[str, ...]] = {
    "RUS": ("RUS", "AIR"),
    "UZB": ("UZB",),
    "KGZ": ("KGZ",),
    "CHN": ("CHN", "AIR"),
    "MNG": ("RUS", "AIR"),
}


def resident_trip(w: World, rng: random.Random, day: date, started: date | None = None) -> Journey | None:
    """A foreign resident (residence permit) abroad and back: no stay limit, no registration."""
    nat = w.people.nationality(rng, "resident")
    mode = pick(rng, RESIDENT_MODES.get(nat, ("AIR",)))
    person = w.people.make(rng, nat, "resident")
    if started is None:
        events = _round_trip_abroad(w, rng, person, day, int(TRIP_LENGTH_PICK(rng)), mode, RESIDENT, Purpose.RESIDENCE)
    else:
        nights = trip_length_at_least(rng, (w.start - started).days)
        events = _round_trip_abroad(w, rng, person, started, nights, mode, RESIDENT, Purpose.RESIDENCE)
        events = [e for e in events if e.time >= w.begin]
    return finish(w, events)


REPATRIATE_ROUTES = {"UZB": "UZB", "CHN": "CHN", "MNG": "AIR", "TKM": "TKM", "RUS": "RUS"}


def repatriate(w: World, rng: random.Random, day: date) -> Journey | None:
    """A kandas (ethnic Kazakh) arriving to settle: one entry on a residence permit."""
    nat = w.people.nationality(rng, "repatriate")
    post = w.catalogue.picker(REPATRIATE_ROUTES.get(nat, "AIR"))(rng)
    person = w.people.make(rng, nat, "repatriate")
    t = w.at(day, hour_pick_for(post)(rng))
    return finish(
        w, [w.cross(t, person, post, Direction.ENTRY, Purpose.REPATRIATION, RESIDENT, w.conveyance(rng, post))]
    )


# --- day traders ---------------------------------------------------------------------------------------------

TRADER_WEEKS = (1, 2, 3, 4)
TRADER_DAYS_PER_WEEK = (1, 2, 3)
TRIPS_PER_TRADER = (sum(TRADER_WEEKS) / len(TRADER_WEEKS)) * (sum(TRADER_DAYS_PER_WEEK) / len(TRADER_DAYS_PER_WEEK))


def day_trader(w: World, rng: random.Random, day: date, started: date | None = None) -> Journey | None:
    """In at morning, out at evening through the same post, 1-3 days a week (Mon-Sat) for 1-4 weeks.

    At most 12 days present in 180: far below any rolling-window limit.
    """
    first = started or day
    nat = w.people.nationality(rng, "day_trader")
    post = w.catalogue.picker("UZB" if nat == "UZB" else "KGZ")(rng)
    if post.info.kind != CheckpointKind.ROAD:
        post = w.catalogue.by_id["KZ-UZ-ZHIBEK-ZHOLY" if nat == "UZB" else "KZ-KG-KORDAI"]
    person = w.people.make(rng, nat, "day_trader", DocumentType.ID_CARD if nat == "KGZ" else DocumentType.PASSPORT)
    weeks = pick(rng, TRADER_WEEKS)
    per_week = pick(rng, TRADER_DAYS_PER_WEEK)
    wd = first.weekday() if first.weekday() < 6 else 5
    others = [x for x in range(6) if x != wd]
    weekdays = {wd, *rng.sample(others, per_week - 1)}
    purpose = Purpose.BUSINESS if rng.random() < 0.7 else Purpose.PRIVATE
    conv = w.conveyance(rng, post)
    events: list[Planned] = []
    for i in range(7 * weeks):
        d = first + timedelta(days=i)
        if d.weekday() not in weekdays or d > w.last_day or d < w.start:
            continue
        events += day_trip(w, rng, person, post, d, purpose, conv)
    return finish(w, events)


def day_trip(
    w: World, rng: random.Random, person: Person, post: Post, d: date, purpose: Purpose, conv: Conveyance | None
) -> list[Planned]:
    """In in the morning, out in the evening of local day `d`, through the same post."""
    t_in = w.at(d, hours_trader_in(rng))
    t_out = w.at(d, hours_trader_out(rng))
    return [
        w.cross(t_in, person, post, Direction.ENTRY, purpose, VISA_FREE, conv),
        w.cross(t_out, person, post, Direction.EXIT, purpose, VISA_FREE, conv),
    ]


def every_day_trader(w: World, rng: random.Random, nat: str, post: Post, first: date, days: int) -> list[Planned]:
    """A frequent crosser (an anomaly, not normal traffic): a day trip on each of `days` days in a row from `first`.
    Past the rolling window's limit this is one continuing WINDOW_BREACH (docs/alerts.md, Step 4)."""
    person = w.people.make(rng, nat, "day_trader", DocumentType.ID_CARD if nat == "KGZ" else DocumentType.PASSPORT)
    purpose = Purpose.BUSINESS if rng.random() < 0.7 else Purpose.PRIVATE
    conv = w.conveyance(rng, post)
    events: list[Planned] = []
    for i in range(days):
        events += day_trip(w, rng, person, post, first + timedelta(days=i), purpose, conv)
    return events


# --- visitors --------------------------------------------------------------------------------------------------


def stay_nights(rng: random.Random, limit_days: int | None) -> int:
    """Nights of a visit within a per-entry limit of `limit_days` days (day of entry = day 1)."""
    cap = limit_days if limit_days is not None else 60
    u = rng.random()
    if u < 0.25:
        n = ri(rng, 0, 2)
    elif u < 0.65:
        n = ri(rng, 3, 9)
    elif u < 0.85:
        n = ri(rng, 10, 19)
    elif u < 0.96:
        n = ri(rng, min(20, cap - 1), max(min(20, cap - 1), min(cap, 60)))
    else:
        n = cap - 1  # leaves on the last allowed day, often late in the evening
    return max(0, min(n, cap - 1))


def registration_time(
    rng: random.Random, entry: datetime, leave: datetime | None, due: datetime | None, last_minute: float = 0.08
) -> datetime | None:
    """When a host registers a guest: soon after arrival, a few at the last minute; always before `due`."""
    lo = entry + timedelta(minutes=30)
    hi = entry + timedelta(hours=30)
    if due is not None:
        hi = min(hi, due - timedelta(minutes=30))
        if rng.random() < last_minute and (leave is None or leave > due):
            t = due - timedelta(seconds=rng.uniform(600, 6 * HOUR))  # the evening of the deadline day
            if t > lo:
                return t
    if leave is not None:
        hi = min(hi, leave - timedelta(minutes=15))
    if hi <= lo:
        return None  # gone within the hour: nobody registers, and no registration is due before leaving
    return lo + (hi - lo) * rng.random() ** 2


def pick_host(w: World, rng: random.Random, person: Person, purpose: Purpose, region: str, vf: date, vu: date) -> Host:
    if purpose in (Purpose.TOURISM, Purpose.BUSINESS) and rng.random() < 0.8:
        return w.hosts.hotel(rng, region)
    if purpose == Purpose.WORK and rng.random() < 0.6:
        return w.hosts.tracked(rng, HostKind.EMPLOYER, region, vf, vu)
    if w.rules.group_of(person.nationality) == "EAEU" and rng.random() < 0.25:
        return w.hosts.own_flat(region)
    return w.hosts.tracked(rng, HostKind.PRIVATE_HOST, region, vf, vu)


def stay_events(
    w: World,
    rng: random.Random,
    person: Person,
    entry_post: Post,
    entry_t: datetime,
    exit_t: datetime | None,
    *,
    purpose: Purpose,
    basis: EntryBasis,
    exit_group: str | None = None,
    register: bool = True,
    host: Host | None = None,
    may_move: bool = False,
) -> list[Planned]:
    """Entry, registration in time (if one is due) and exit of one visit; `exit_t` None = no exit planned."""
    conv = w.conveyance(rng, entry_post)
    card = entry_post.info.kind == CheckpointKind.AIR
    events: list[Planned] = [w.cross(entry_t, person, entry_post, Direction.ENTRY, purpose, basis, conv, card=card)]
    due = w.registration_due(person.nationality, basis, purpose, entry_t)
    if register and due is not None:
        reg_t = registration_time(rng, entry_t, exit_t, due)
        if reg_t is not None:
            vf = w.local(entry_t)
            vu = w.local(exit_t) if exit_t is not None else vf + timedelta(days=29)
            if host is None:
                region = w.hosts.region_for(rng, entry_post.info.region)
                host = pick_host(w, rng, person, purpose, region, vf, vu)
            reg = w.register(reg_t, person, host, vf, vu)
            events.append(reg)
            if exit_t is not None and may_move:
                events.extend(_address_change(w, rng, person, reg, due, exit_t, basis, purpose))
    if exit_t is not None:
        exit_post = entry_post
        if exit_group is not None:
            exit_post = other_post(w, rng, entry_post, exit_group, (exit_t - entry_t).total_seconds(), 0.8)
        same = exit_post is entry_post
        events.append(w.cross(exit_t, person, exit_post, Direction.EXIT, purpose, basis, conv if same else None))
    return events


def _address_change(
    w: World,
    rng: random.Random,
    person: Person,
    reg: PlannedRegistration,
    due: datetime,
    leave: datetime,
    basis: EntryBasis,
    purpose: Purpose,
) -> list[Planned]:
    """A long-staying guest moves: old registration cancelled, new one the same or next day (after the deadline)."""
    if rng.random() > 0.3 or leave - due < timedelta(days=6):
        return []
    move = due + timedelta(days=1) + (leave - due - timedelta(days=4)) * rng.random()
    cancel = w.cancel(move, reg)
    new_t = move + timedelta(seconds=rng.uniform(HOUR, 26 * HOUR))
    vf, vu = w.local(new_t), w.local(leave)
    host = w.hosts.tracked(rng, HostKind.PRIVATE_HOST, reg.region, vf, vu)
    return [cancel, w.register(new_t, person, host, vf, vu)]


def visit_exit_time(w: World, rng: random.Random, entry_t: datetime, nights: int, hours: HourPick) -> datetime:
    """When a visitor staying `nights` nights leaves: on that local day, at least an hour after arriving."""
    e = w.local(entry_t)
    if nights == 0 and w.day_start(e + ONE_DAY) - entry_t < timedelta(hours=3):
        nights = 1  # arrived late in the evening: leaves the next day
    leave_day = e + timedelta(days=nights)
    t = w.at(leave_day, hours(rng))
    end_of_day = w.day_start(leave_day + ONE_DAY) - timedelta(minutes=5)
    if nights == 0 and t <= entry_t + timedelta(hours=1):
        t = entry_t + (end_of_day - entry_t) * rng.uniform(0.4, 1.0)
    return min(t, end_of_day)


def _lost_and_found(w: World, rng: random.Random, person: Person, entry_t: datetime, exit_t: datetime) -> list[Planned]:
    """A document reported lost and recovered before leaving (a watch-list check that must stay quiet)."""
    if exit_t - entry_t < timedelta(days=3):
        return []
    lost = entry_t + (exit_t - entry_t) * rng.uniform(0.2, 0.5)
    found = lost + timedelta(hours=rng.uniform(4, 30))
    if found > exit_t - timedelta(hours=2):
        return []
    return [
        w.status(lost, person, StatusChangeKind.DOCUMENT_LOST),
        w.status(found, person, StatusChangeKind.DOCUMENT_RECOVERED),
    ]


def land_visitor(w: World, rng: random.Random, day: date) -> Journey | None:
    """A visitor by road, rail or sea: relatives, tourists, business and short work trips from CIS countries."""
    nat = w.people.nationality(rng, "land_visitor")
    group = pick(rng, LAND_ROUTES.get(nat, ("RUS",)))
    post = w.catalogue.picker(group)(rng)
    return _visit(w, rng, day, nat, post, group, "land_visitor", VISITOR_PURPOSES(rng))


def air_visitor(w: World, rng: random.Random, day: date) -> Journey | None:
    """A visitor by air: tourists and business visitors staying in hotels; a few diplomats."""
    nat = w.people.nationality(rng, "air_visitor")
    post = w.catalogue.picker("AIR")(rng)
    if rng.random() < 0.02:
        person = w.people.make(rng, nat, "diplomat", DocumentType.DIPLOMATIC_PASSPORT)
        entry_t = w.at(day, hours_air(rng))
        exit_t = visit_exit_time(w, rng, entry_t, rng.randint(2, 60), hours_air)
        return finish(w, stay_events(w, rng, person, post, entry_t, exit_t, purpose=Purpose.BUSINESS, basis=DIPLOMAT))
    return _visit(w, rng, day, nat, post, "AIR", "air_visitor", AIR_PURPOSES(rng))


def _visit(
    w: World, rng: random.Random, day: date, nat: str, post: Post, group: str, profile: str, purpose: Purpose
) -> Journey | None:
    person = w.people.make(rng, nat, profile)
    hours = hour_pick_for(post)
    entry_t = w.at(day, hours(rng))
    e = w.local(entry_t)
    basis = w.visa_free_basis(nat, e, rng, days=pick(rng, (15, 30, 30, 60, 90)))
    last = w.last_allowed_day(nat, basis, e)
    limit = None if last is None else (last - e).days + 1
    nights = stay_nights(rng, limit)
    events: list[Planned] = []
    if basis.kind == EntryBasisKind.VISA and last is not None and rng.random() < 0.15:
        # A visa extension a few days before the visa runs out, then a stay beyond the first expiry.
        ext_t = w.at(last - timedelta(days=rng.randint(2, 6)), hours_office(rng))
        if ext_t > entry_t + timedelta(hours=2):
            new_last = last + timedelta(days=30)
            events.append(
                w.status(ext_t, person, StatusChangeKind.VISA_EXTENDED, valid_from=last, valid_until=new_last)
            )
            nights = min((last - e).days + rng.randint(1, 25), (new_last - e).days)
    exit_t = visit_exit_time(w, rng, entry_t, nights, hours)
    events.extend(
        stay_events(
            w, rng, person, post, entry_t, exit_t, purpose=purpose, basis=basis, exit_group=group, may_move=True
        )
    )
    if rng.random() < 0.003:
        events.extend(_lost_and_found(w, rng, person, entry_t, exit_t))
    return finish(w, events)


# --- transit and labour ----------------------------------------------------------------------------------------

TRANSIT_ENTRY = {"UZB": "UZB", "TJK": "UZB", "AFG": "UZB", "KGZ": "KGZ", "TKM": "TKM"}


def transit_plan(
    w: World, rng: random.Random, nat: str, day: date
) -> tuple[Post, Post, str, datetime, datetime] | None:
    """Entry post, declared exit post on the destination's route, destination, and a timely entry and exit."""
    rule = w.rules.transit_rule(day)
    if rule is None:
        return None
    dest = "RUS" if rng.random() < 0.9 or "CHN" not in rule.routes else "CHN"
    entry_post = w.catalogue.picker(TRANSIT_ENTRY.get(nat, "UZB"))(rng)
    routes = sorted(rule.routes.get(dest, frozenset()))
    if not routes:
        return None
    window_s = rule.window_hours * HOUR
    choices = [w.catalogue.by_id[c] for c in routes if c in w.catalogue.by_id]
    reachable = [c for c in choices if w.catalogue.feasible_seconds(entry_post, c) * 1.2 < window_s - 6 * HOUR]
    if not reachable:
        return None
    exit_post = rng.choice(reachable)
    entry_t = w.at(day, hours_land(rng))
    least = w.catalogue.feasible_seconds(entry_post, exit_post) * 1.1
    exit_t = entry_t + timedelta(seconds=least + (window_s - 6 * HOUR - least) * rng.random() ** 1.5)
    return entry_post, exit_post, dest, entry_t, exit_t


def transit(w: World, rng: random.Random, day: date) -> Journey | None:
    """Central Asian travellers heading to Russia (some to China) straight through, on the declared route."""
    nat = w.people.nationality(rng, "transit")
    plan = transit_plan(w, rng, nat, day)
    if plan is None:
        return None
    entry_post, exit_post, dest, entry_t, exit_t = plan
    person = w.people.make(rng, nat, "transit")
    basis = w.visa_free_basis(nat, w.local(entry_t), rng, days=10)
    conv = w.conveyance(rng, entry_post)
    return finish(
        w,
        [
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
            ),
            w.cross(exit_t, person, exit_post, Direction.EXIT, Purpose.TRANSIT, basis, conv, destination=dest),
        ],
    )


def seasonal_worker(w: World, rng: random.Random, day: date) -> Journey | None:
    """A labour migrant for 2-8 months (4.5 on average), registered by the employer within days.

    Uzbek and Tajik workers hold a work permit: most get it before coming (WORK_PERMIT entry), some enter
    visa-free and get it within the first weeks (the permit extends the stay). Kyrgyz workers (EAEU) need no
    permit and stay under 90 days.
    """
    nat = w.people.nationality(rng, "seasonal_worker")
    person = w.people.make(rng, nat, "seasonal_worker")
    group = "KGZ" if nat == "KGZ" else "UZB"
    post = w.catalogue.picker(group)(rng)
    events: list[Planned] = []
    if nat == "KGZ":
        nights = ri(rng, 45, 84)
        entry_t = w.at(day, hours_land(rng))
        basis = VISA_FREE
    else:
        nights = int(rng.triangular(60, 240, 110))
        permit_first = rng.random() < 0.7
        if permit_first:
            issued = w.at(day, hours_office(rng))
            entry_day = day + timedelta(days=rng.randint(1, 20))
            entry_t = w.at(entry_day, hours_land(rng))
            basis = EntryBasis(EntryBasisKind.WORK_PERMIT, None, f"WP{rng.randrange(10**9):09d}")
            until = entry_day + timedelta(days=nights + rng.randint(5, 30))
            events.append(
                w.status(issued, person, StatusChangeKind.WORK_PERMIT_ISSUED, valid_from=entry_day, valid_until=until)
            )
        else:
            entry_t = w.at(day, hours_land(rng))
            entry_day = w.local(entry_t)
            basis = VISA_FREE
            issued = w.at(entry_day + timedelta(days=rng.randint(3, 20)), hours_office(rng))
            until = entry_day + timedelta(days=nights + rng.randint(5, 30))
            events.append(
                w.status(
                    issued, person, StatusChangeKind.WORK_PERMIT_ISSUED, valid_from=w.local(issued), valid_until=until
                )
            )
    exit_t = visit_exit_time(w, rng, entry_t, nights, hours_land)
    vf, vu = w.local(entry_t), w.local(exit_t)
    region = post.info.region if rng.random() < 0.6 else w.hosts.region_for(rng, post.info.region)
    employer = w.hosts.tracked(rng, HostKind.EMPLOYER, region, vf, vu)
    events.extend(stay_events(w, rng, person, post, entry_t, exit_t, purpose=Purpose.WORK, basis=basis, host=employer))
    return finish(w, events)


Builder = Callable[[World, random.Random, date], "Journey | None"]
BUILDERS: dict[str, Builder] = {
    "day_trader": day_trader,
    "land_visitor": land_visitor,
    "air_visitor": air_visitor,
    "transit": transit,
    "seasonal_worker": seasonal_worker,
    "resident": resident_trip,
    "repatriate": repatriate,
}
# Crossings one journey of each behaviour produces (to turn crossing targets into journeys started).
CROSSINGS_PER_JOURNEY: dict[str, float] = {
    "citizen": 2.0,
    "day_trader": 2.0 * TRIPS_PER_TRADER,
    "land_visitor": 2.0,
    "air_visitor": 2.0,
    "transit": 2.0,
    "seasonal_worker": 2.0,
    "resident": 2.0,
    "repatriate": 1.0,
}
