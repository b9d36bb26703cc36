"""Data faults of real sources: upload delays, checkpoints offline for hours, duplicates, malformed payloads.

None of them may change the expected alerts: delays and outages move only the publish (and received) time,
duplicates repeat an event with the same event id, and malformed payloads are extra messages (a broken
copy of a real event with a fresh id, or bytes no decoder accepts), each listed in the ground truth.
"""

from __future__ import annotations

import copy
import io
import json
import random
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import cache
from typing import Any

import fastavro

from harness.simulator.catalogue import SOUTHERN, Catalogue
from harness.simulator.config import FaultRates
from harness.simulator.materialise import CROSSING, RECORD_NAME, REGISTRATION, Materialiser, kind_of
from harness.simulator.plan import Planned, PlannedCrossing
from harness.simulator.world import EventIds
from schemas.records import CheckpointKind, Crossing, Registration, StatusChange
from schemas.serde import SINGLE_OBJECT_MAGIC, fingerprint_of, latest_version, schema_versions
from shekara.rules import RuleBook

# Typical upload delays of each source: border posts in near real time, hotels in seconds to minutes,
# ministries' systems in minutes to hours.
_DELAY_S = {"crossing": (1.0, 20.0), "registration": (5.0, 900.0), "status_change": (60.0, 3 * 3600.0)}

MALFORMED_SORTS = (
    "undecodable_bytes",
    "truncated_avro",
    "json_instead_of_avro",
    "unknown_schema",
    "missing_document_number",
    "birth_date_in_future",
    "event_time_in_future",
    "unknown_enum_symbol",
    "bad_country_code",
    "inconsistent_fields",
)
_RECORD_TYPES = {"crossing": Crossing, "registration": Registration, "status_change": StatusChange}
# The enum field of each record that a source on a newer code list might send an unknown symbol for.
_ENUM_FIELD = {
    "crossing": ("direction", "TRANSFER"),
    "registration": ("action", "AMENDED"),
    "status_change": ("kind", "VISA_REVOKED"),
}


@dataclass(frozen=True, slots=True)
class Malformed:
    raw: bytes
    key: bytes
    event_id: str | None
    traveller_key: str | None
    sort: str
    reason: str


class Faults:
    def __init__(
        self, rates: FaultRates, seed: int, start: date, rules: RuleBook, catalogue: Catalogue, shard: int = 0
    ) -> None:
        self.rates = rates
        self.start = start
        self.seed = seed
        self.rules = rules
        self._land = [p for p in catalogue.posts if p.info.kind in (CheckpointKind.ROAD, CheckpointKind.RAIL)]
        self._rng = random.Random(f"faults:{seed}:{shard}")  # outages are per post and day, for every shard
        self._outages: dict[int, dict[str, tuple[datetime, datetime]]] = {}
        self._malformed_count = 0

    # --- delays -----------------------------------------------------------------------------------------------
    def outages_on(self, index: int) -> dict[str, tuple[datetime, datetime]]:
        """Land posts offline on day `index` of the period, with the offline period (they upload at its end)."""
        hit = self._outages.get(index)
        if hit is None:
            hit = {}
            rate = self.rates.late_upload
            if rate > 0:
                day = self.start + timedelta(days=index)
                rng = random.Random(f"outage:{self.seed}:{day.toordinal()}")
                start = self.rules.day_start(day)
                for p in self._land:
                    chance = rate * (2.0 if p.info.border_country in SOUTHERN else 1.0)
                    if rng.random() < chance:
                        begin = start + timedelta(seconds=rng.uniform(0, 22 * 3600))
                        hit[p.id] = (begin, begin + timedelta(seconds=rng.uniform(2 * 3600, 10 * 3600)))
            if len(self._outages) > 8:
                for old in sorted(self._outages)[:-4]:
                    del self._outages[old]
            self._outages[index] = hit
        return hit

    def publish_time(self, ev: Planned, kind: str, index: int) -> tuple[datetime, bool, bool]:
        """(publish time, uploaded late after an outage, held back out of order) of an event on day `index`."""
        rng = self._rng
        lo, hi = _DELAY_S[kind]
        t = ev.time + timedelta(seconds=rng.uniform(lo, hi))
        late = False
        if kind == CROSSING and self.rates.late_upload > 0:
            assert isinstance(ev, PlannedCrossing)
            for d in (index, index - 1):
                window = self.outages_on(d).get(ev.checkpoint.id)
                if window is not None and window[0] <= ev.time < window[1]:
                    t = window[1] + timedelta(seconds=rng.uniform(0, 1200))  # the burst after reconnecting
                    late = True
                    break
        held = False
        if self.rates.out_of_order > 0 and rng.random() < self.rates.out_of_order:
            t += timedelta(seconds=rng.uniform(30, 1800))
            held = True
        return t, late, held

    def jitter(self, lo_s: float, hi_s: float) -> timedelta:
        return timedelta(seconds=self._rng.uniform(lo_s, hi_s))

    def extras(self) -> tuple[timedelta | None, bool]:
        """(delay of a duplicate send or None, whether a malformed payload follows): one draw for both."""
        dup, bad = self.rates.duplicate, self.rates.malformed
        if dup <= 0 and bad <= 0:
            return None, False
        u = self._rng.random()
        if u < dup:
            return timedelta(seconds=self._rng.uniform(1, 1800)), False
        return None, u < dup + bad

    # --- malformed payloads -----------------------------------------------------------------------------------
    def malformed(self, ev: Planned, publish: datetime, mat: Materialiser, ids: EventIds) -> Malformed:
        """A broken payload derived from `ev` (sorts taken in turn, so every sort shows up early)."""
        sort = MALFORMED_SORTS[self._malformed_count % len(MALFORMED_SORTS)]
        self._malformed_count += 1
        kind = kind_of(ev)
        rng = self._rng
        person = ev.person
        if sort == "undecodable_bytes":
            n = rng.randint(12, 160)
            raw = bytes([rng.randint(0x01, 0xBF)]) + bytes(rng.getrandbits(8) for _ in range(n))
            return Malformed(raw, person.key_bytes, None, None, sort, "not Avro: unknown magic byte, cannot decode")
        event_id = ids.next()
        d = mat.avro(ev, publish, event_id)
        d["traveller"] = copy.deepcopy(d["traveller"])
        reason: str
        if sort == "truncated_avro":
            body = _single_object(kind, d)
            raw = body[: rng.randint(10, len(body) - 1)]
            return Malformed(raw, person.key_bytes, event_id, person.key, sort, "truncated Avro body, cannot decode")
        if sort == "json_instead_of_avro":
            raw = json.dumps(_jsonable(d), sort_keys=True).encode()
            return Malformed(raw, person.key_bytes, event_id, person.key, sort, "JSON text sent instead of Avro")
        if sort == "unknown_schema":
            fp = _unknown_fingerprint(rng)
            body = _single_object(kind, d)
            raw = SINGLE_OBJECT_MAGIC + fp + body[len(SINGLE_OBJECT_MAGIC) + 8 :]
            return Malformed(
                raw, person.key_bytes, event_id, person.key, sort, "written with a schema not in schemas/avro"
            )
        if sort == "unknown_enum_symbol":
            field, symbol = _ENUM_FIELD[kind]
            d[field] = symbol
            raw = _single_object(kind, d, patched=True)
            reason = f"{field}: unknown enum symbol {symbol} (index beyond the schema's symbols)"
            return Malformed(raw, person.key_bytes, event_id, person.key, sort, reason)
        if sort == "missing_document_number":
            d["traveller"]["document"]["number"] = ""
            reason = "traveller.document.number: missing (empty)"
        elif sort == "birth_date_in_future":
            d["traveller"]["birth_date"] = self.rules.local_date(publish) + timedelta(days=rng.randint(30, 3000))
            reason = "traveller.birth_date: in the future"
        elif sort == "event_time_in_future":
            d["event_time"] = publish + timedelta(days=rng.uniform(2, 10))
            reason = "event_time: days after received_time (source clock set in the future)"
        elif sort == "bad_country_code":
            d["traveller"]["nationality"] = rng.choice(("Uzbekistan", "RU", "kgz", "12A"))
            reason = "traveller.nationality: not an ISO 3166-1 alpha-3 code"
        else:  # inconsistent_fields
            if kind == CROSSING:
                d["purpose"], d["declared_destination"] = "TRANSIT", None
                reason = "declared_destination: missing for a TRANSIT crossing"
            elif kind == REGISTRATION:
                d["valid_until"] = d["valid_from"] - timedelta(days=rng.randint(1, 30))
                reason = "valid_until: before valid_from"
            else:  # (an EXPELLED without valid_until is valid: the rules' default ban applies)
                d["valid_from"] = d.get("valid_from") or self.rules.local_date(publish)
                d["valid_until"] = d["valid_from"] - timedelta(days=rng.randint(1, 30))
                reason = "valid_until: before valid_from"
        return Malformed(_single_object(kind, d), person.key_bytes, event_id, person.key, sort, reason)


def _single_object(kind: str, d: dict[str, Any], patched: bool = False) -> bytes:
    """Avro single-object encoding with the latest schema (or one with an extra enum symbol)."""
    name = RECORD_NAME[kind]
    schema = _patched_schema(kind) if patched else latest_version(name).parsed
    buf = io.BytesIO()
    buf.write(SINGLE_OBJECT_MAGIC)
    buf.write(fingerprint_of(_RECORD_TYPES[kind]))
    fastavro.schemaless_writer(buf, schema, d)
    return buf.getvalue()


@cache
def _patched_schema(kind: str) -> Any:
    raw = copy.deepcopy(latest_version(RECORD_NAME[kind]).raw)
    field, symbol = _ENUM_FIELD[kind]
    for f in raw["fields"]:
        if f["name"] == field:
            f["type"]["symbols"].append(symbol)
    return fastavro.parse_schema(raw)


def _unknown_fingerprint(rng: random.Random) -> bytes:
    known = {sv.fingerprint for versions in schema_versions().values() for sv in versions}
    while True:
        fp = bytes(rng.getrandbits(8) for _ in range(8))
        if fp not in known:
            return fp


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value
