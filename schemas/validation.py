"""Checks on source events before they are accepted, and parsing of plain (JSON) values into records.

Every problem is a `ValidationError` naming the field by its dotted path ("traveller.document.number") and
saying what is wrong, so an integrator can fix the record and a dead letter can say why it was refused.
Error messages never echo a document number: they end up in logs and the dead-letter topic.

Two layers:
* `parse_record` / `from_json`: shape. Plain values (ISO-8601 strings, enum names) are read by walking the
  record's latest Avro schema, so the parser and the contract cannot drift apart.
* `validation_errors` / `validate`: meaning. Times, ages, formats and the rules that tie fields together.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator, Mapping
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Any

from schemas.convert import RECORD_TYPES, from_avro
from schemas.ids import source_event_id
from schemas.records import (
    CheckpointKind,
    ConveyanceKind,
    Crossing,
    Direction,
    DocumentType,
    EntryBasisKind,
    HostKind,
    Purpose,
    Registration,
    RegistrationAction,
    Sex,
    StatusChange,
    StatusChangeKind,
    Traveller,
)
from schemas.serde import Record, latest_version
from shekara.pseudonym import normalise_document_number
from shekara.reference import Catalogue, load_catalogue
from shekara.rules import load_rules
from shekara.settings import Limits, Settings

# Whole-string patterns (`fullmatch`): a trailing newline is not part of a code.
COUNTRY = re.compile(r"[A-Z]{3}")  # ISO 3166-1 alpha-3, as in a document's machine-readable zone
DOCUMENT_NUMBER = re.compile(r"[A-Z0-9]{5,20}")  # after normalise_document_number
REGION = re.compile(r"KZ-[A-Z0-9]{2,3}")  # ISO 3166-2:KZ, e.g. KZ-75 or KZ-ALA
# Control characters (C0, DEL, C1) and the bidirectional embeddings, overrides and isolates: in a text field
# they hide or reorder what an operator reads. The sink refuses the same (shekara_text_problem, migration 007).
HIDDEN = re.compile(r"[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
HIDDEN_REASON = (
    "contains a control character or a bidirectional override (U+0000-001F, U+007F-009F, U+202A-202E, U+2066-2069)"
)
# A document number is Latin letters and digits, as in the machine-readable zone (ICAO 9303), besides the
# separators normalising removes. A letter that upper-cases into Latin ones ("ß" -> "SS", dotless i -> "I") or a
# fullwidth one is refused rather than folded: the sink (RE2, upperUTF8) could not fold it the same way.
NOT_LATIN = re.compile(r"[^\x00-\x7f\s]")
NOT_LATIN_REASON = "must be Latin letters A-Z and digits (besides separators); got other letters or symbols"
MAX_AGE_YEARS = 125
SOURCE_RECORDS = (Crossing, Registration, StatusChange)


class ValidationError(ValueError):
    """One problem with one field: `field` is a dotted path, `message` says what is wrong."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


# --- meaning ------------------------------------------------------------------------------------------------

DEFAULT_LIMITS = Limits()


def catalogue_for(settings: Settings) -> Catalogue:
    """The checkpoint catalogue of `settings` (its file, and the rules' time zone for its open dates)."""
    return load_catalogue(settings.checkpoints_file, load_rules(settings.rules_file).timezone.key)


def validate(
    record: Any,
    *,
    now: datetime,
    max_future_skew_s: int,
    limits: Limits = DEFAULT_LIMITS,
    catalogue: Catalogue | None = None,
) -> None:
    """Raise the first problem found in a source event (Crossing, Registration, StatusChange), if any.

    `catalogue`: the checkpoints a crossing may name (default: rules/checkpoints.csv, see `catalogue_for`)."""
    catalogue = catalogue or load_catalogue()
    if type(record) is Crossing and _plain_crossing(record, now, max_future_skew_s, limits, catalogue):
        return
    for problem in _problems(record, now, max_future_skew_s, limits, catalogue):
        raise problem


def validation_errors(
    record: Any,
    *,
    now: datetime,
    max_future_skew_s: int,
    limits: Limits = DEFAULT_LIMITS,
    catalogue: Catalogue | None = None,
) -> list[ValidationError]:
    """Every problem found in a source event; empty when it is valid."""
    return list(_problems(record, now, max_future_skew_s, limits, catalogue or load_catalogue()))


def _values(enum: type[StrEnum]) -> frozenset[str]:
    return frozenset(m.value for m in enum)


_ENUM_VALUES: dict[type[StrEnum], frozenset[str]] = {
    e: _values(e)
    for e in (
        CheckpointKind,
        ConveyanceKind,
        Direction,
        DocumentType,
        EntryBasisKind,
        HostKind,
        Purpose,
        RegistrationAction,
        Sex,
        StatusChangeKind,
    )
}


def _enum(value: Any, enum: type[StrEnum], path: str) -> Iterator[ValidationError]:
    if not isinstance(value, str) or value not in _ENUM_VALUES[enum]:
        allowed = ", ".join(sorted(_ENUM_VALUES[enum]))
        yield ValidationError(path, f"must be one of {allowed}; got {value!r}")


def _text(value: Any, path: str, limit: int) -> Iterator[ValidationError]:
    if not isinstance(value, str) or not value.strip():
        yield ValidationError(path, "must be a non-empty string")
    elif (problem := _chars(value, path, limit)) is not None:
        yield problem


def _opt_text(value: Any, path: str, limit: int) -> Iterator[ValidationError]:
    if value is None:
        return
    if not isinstance(value, str):
        yield ValidationError(path, f"must be a string or null; got {type(value).__name__}")
    elif (problem := _chars(value, path, limit)) is not None:
        yield problem


def _chars(value: str, path: str, limit: int) -> ValidationError | None:
    """A text's length in characters, and its hidden characters (a plain function: this runs for every field)."""
    if len(value) > limit:
        return ValidationError(path, f"is {len(value)} characters long, more than the limit of {limit}")
    if not value.isprintable() and HIDDEN.search(value):  # every HIDDEN character is unprintable: a C fast path
        return ValidationError(path, HIDDEN_REASON)
    return None


def _country(value: Any, path: str, optional: bool = False) -> Iterator[ValidationError]:
    if value is None and optional:
        return
    if not isinstance(value, str) or not COUNTRY.fullmatch(value):
        yield ValidationError(path, f"must be an ISO 3166-1 alpha-3 country code (3 capital letters); got {value!r}")


def _is_date(value: Any) -> bool:
    return isinstance(value, date) and not isinstance(value, datetime)


def _aware(value: Any) -> bool:
    return isinstance(value, datetime) and value.tzinfo is not None and value.utcoffset() is not None


def _beyond(day: date, path: str, limits: Limits) -> ValidationError | None:
    """The date horizon (settings.limits): a date beyond it is a typo or a placeholder such as 9999-12-31."""
    if limits.earliest_date <= day <= limits.latest_date:
        return None
    return ValidationError(
        path, f"is outside the accepted dates {limits.earliest_date}..{limits.latest_date}; got {day.isoformat()}"
    )


def _utc_day(value: datetime) -> date:
    if value.tzinfo is UTC:  # as decoded
        return value.date()
    try:
        return value.astimezone(UTC).date()
    except OverflowError:  # 9999-12-31T23:00-05:00 has no UTC day: beyond any horizon anyway
        return date.max if value.utcoffset() < timedelta(0) else date.min  # type: ignore[operator]


def _date(value: Any, path: str, limits: Limits, optional: bool = False) -> Iterator[ValidationError]:
    if value is None and optional:
        return
    if not _is_date(value):
        yield ValidationError(path, f"must be a calendar date; got {type(value).__name__}")
    elif (problem := _beyond(value, path, limits)) is not None:
        yield problem


def _envelope(record: Any, now: datetime, skew_s: int, limits: Limits) -> Iterator[ValidationError]:
    yield from _text(record.event_id, "event_id", limits.max_id_chars)
    event_ok = _aware(record.event_time)
    if not event_ok:
        yield ValidationError("event_time", "must be a timezone-aware datetime (e.g. ...Z or +05:00)")
    elif (problem := _beyond(_utc_day(record.event_time), "event_time", limits)) is not None:
        event_ok = False
        yield problem
    if not _aware(record.received_time):
        yield ValidationError("received_time", "must be a timezone-aware datetime (e.g. ...Z or +05:00)")
    elif (problem := _beyond(_utc_day(record.received_time), "received_time", limits)) is not None:
        yield problem
    elif event_ok:
        skew = timedelta(seconds=skew_s)
        if record.event_time > now + skew:
            ahead = (record.event_time - now).total_seconds()
            yield ValidationError(
                "event_time", f"is {ahead:.0f} s in the future (more than the allowed clock skew of {skew_s} s)"
            )
        if record.received_time < record.event_time - skew:
            yield ValidationError("received_time", "is earlier than event_time (beyond the allowed clock skew)")
    yield from _text(record.source_system, "source_system", limits.max_text_chars)
    yield from _opt_text(record.source_record_id, "source_record_id", limits.max_id_chars)


def _document_number(number: Any, path: str, limits: Limits) -> Iterator[ValidationError]:
    if not isinstance(number, str):
        yield ValidationError(path, "must be a string")
    elif len(number) > limits.max_id_chars:
        yield ValidationError(path, f"is {len(number)} characters long, more than the limit of {limits.max_id_chars}")
    elif not number.isascii() and NOT_LATIN.search(number):
        yield ValidationError(path, NOT_LATIN_REASON)
    else:
        normal = normalise_document_number(number)
        if not DOCUMENT_NUMBER.fullmatch(normal):
            yield ValidationError(
                path,
                f"must be 5-20 letters or digits after removing separators; got {len(normal)} characters"
                + ("" if normal.isalnum() or not normal else " including other symbols"),
            )


def _traveller(t: Any, now: datetime, limits: Limits, path: str = "traveller") -> Iterator[ValidationError]:
    if not isinstance(t, Traveller):
        yield ValidationError(path, "must be a Traveller")
        return
    doc = t.document
    yield from _enum(doc.type, DocumentType, f"{path}.document.type")
    yield from _document_number(doc.number, f"{path}.document.number", limits)
    yield from _country(doc.issuing_country, f"{path}.document.issuing_country")
    yield from _country(t.nationality, f"{path}.nationality")
    born = f"{path}.birth_date"
    if not _is_date(t.birth_date):
        yield ValidationError(born, f"must be a calendar date; got {type(t.birth_date).__name__}")
    else:
        today = now.date()
        if t.birth_date > today:
            yield ValidationError(born, "is in the future (after the day of the event)")
        elif _age(t.birth_date, today) > MAX_AGE_YEARS:
            yield ValidationError(born, f"gives an age over {MAX_AGE_YEARS} years")
        elif (problem := _beyond(t.birth_date, born, limits)) is not None:  # an event before 2025, say
            yield problem
    yield from _enum(t.sex, Sex, f"{path}.sex")


def _age(born: date, today: date) -> int:
    return today.year - born.year - ((today.month, today.day) < (born.month, born.day))


def _crossing(r: Crossing, now: datetime, limits: Limits, catalogue: Catalogue) -> Iterator[ValidationError]:
    ids = limits.max_id_chars
    cp = r.checkpoint
    id_ok = True
    for problem in _text(cp.id, "checkpoint.id", ids):
        id_ok = False
        yield problem
    if id_ok:
        # Unknown, or not open at the crossing's instant (an unaware event_time is refused by the envelope).
        why = catalogue.refusal(cp.id, r.event_time) if _aware(r.event_time) else catalogue.known(cp.id)
        if why is not None:
            yield ValidationError("checkpoint.id", why)
    yield from _enum(cp.kind, CheckpointKind, "checkpoint.kind")
    yield from _country(cp.border_country, "checkpoint.border_country", optional=True)
    yield from _enum(r.direction, Direction, "direction")
    yield from _traveller(r.traveller, now, limits)
    yield from _enum(r.purpose, Purpose, "purpose")
    eb = r.entry_basis
    yield from _enum(eb.kind, EntryBasisKind, "entry_basis.kind")
    yield from _date(eb.visa_expiry, "entry_basis.visa_expiry", limits, optional=True)
    if eb.kind == EntryBasisKind.VISA and eb.visa_expiry is None:
        yield ValidationError("entry_basis.visa_expiry", "is required when entry_basis.kind is VISA")
    yield from _opt_text(eb.permit_number, "entry_basis.permit_number", ids)
    yield from _country(r.declared_destination, "declared_destination", optional=True)
    if r.purpose == Purpose.TRANSIT and r.declared_destination is None:
        yield ValidationError("declared_destination", "is required when purpose is TRANSIT")
    exit_ok = True
    for problem in _opt_text(r.planned_exit_checkpoint, "planned_exit_checkpoint", ids):
        exit_ok = False
        yield problem
    # A route names checkpoints of the catalogue; whether one is open then is for the exit itself to say.
    planned = r.planned_exit_checkpoint
    if exit_ok and planned is not None and (why := catalogue.known(planned)) is not None:
        yield ValidationError("planned_exit_checkpoint", why)
    yield from _opt_text(r.migration_card_number, "migration_card_number", ids)
    if r.conveyance is not None:
        yield from _enum(r.conveyance.kind, ConveyanceKind, "conveyance.kind")
        yield from _opt_text(r.conveyance.identifier, "conveyance.identifier", ids)


# --- the all-clear of a plain crossing ------------------------------------------------------------------------
# Nearly every crossing is plain: printable text within its limits, codes and numbers of capitals and digits, dates
# as decoded (UTC) within the horizon. `_plain_crossing` says so in one pass of straight-line tests, without the
# generators of `_problems` (which the processors ran for every event: 8.9 against 6.7 us before the limits'
# checks). It is a sufficient condition only: True means `_problems` finds nothing
# (tests/schemas/test_validation.py holds it to that); False sends the record through `_problems`, which finds its
# first problem, if any.
_CROSSING_ENUMS = tuple(
    _ENUM_VALUES[e] for e in (CheckpointKind, Direction, Purpose, EntryBasisKind, DocumentType, Sex)
)
_CONVEYANCE = _ENUM_VALUES[ConveyanceKind]


def _plain_text(value: Any, limit: int) -> bool:
    # printable: no HIDDEN character (all are unprintable), and no whitespace but ' ' (strip() is then exact)
    return type(value) is str and len(value) <= limit and value.isprintable()


def _plain_code(value: Any) -> bool:
    return type(value) is str and COUNTRY.fullmatch(value) is not None


def _plain_crossing(r: Crossing, now: datetime, skew_s: int, limits: Limits, catalogue: Catalogue) -> bool:
    ids, earliest, latest = limits.max_id_chars, limits.earliest_date, limits.latest_date
    et, rt = r.event_time, r.received_time
    if not (type(et) is datetime and type(rt) is datetime and et.tzinfo is UTC and rt.tzinfo is UTC):
        return False
    skew = timedelta(seconds=skew_s)
    if not (earliest <= et.date() <= latest and earliest <= rt.date() <= latest and et <= now + skew):
        return False
    if rt < et - skew:
        return False
    cp, t, eb, conveyance = r.checkpoint, r.traveller, r.entry_basis, r.conveyance
    if type(t) is not Traveller:
        return False
    doc = t.document
    for value, allowed in zip(
        (cp.kind, r.direction, r.purpose, eb.kind, doc.type, t.sex), _CROSSING_ENUMS, strict=True
    ):
        # isinstance first: `in` a set hashes the value, and an unhashable one must be refused, not raise
        if not (isinstance(value, str) and value in allowed):
            return False
    if conveyance is not None and not (isinstance(conveyance.kind, str) and conveyance.kind in _CONVEYANCE):
        return False
    if not (
        _plain_text(r.event_id, ids)
        and r.event_id.strip()
        and _plain_text(r.source_system, limits.max_text_chars)
        and r.source_system.strip()
        and _plain_text(cp.id, ids)
        and cp.id.strip()
        and (r.source_record_id is None or _plain_text(r.source_record_id, ids))
        and (eb.permit_number is None or _plain_text(eb.permit_number, ids))
        and (r.migration_card_number is None or _plain_text(r.migration_card_number, ids))
        and (conveyance is None or conveyance.identifier is None or _plain_text(conveyance.identifier, ids))
    ):
        return False
    number = doc.number
    # ASCII letters and digits only: normalising just upper-cases it (a number with separators takes the long way)
    if not (type(number) is str and 5 <= len(number) <= min(20, ids) and number.isascii() and number.isalnum()):
        return False
    if not (_plain_code(doc.issuing_country) and _plain_code(t.nationality)):
        return False
    if not (cp.border_country is None or _plain_code(cp.border_country)):
        return False
    if not (r.declared_destination is None or _plain_code(r.declared_destination)):
        return False
    if r.purpose == Purpose.TRANSIT and r.declared_destination is None:
        return False
    born, today = t.birth_date, (et if et <= now else now).date()
    if not (type(born) is date and earliest <= born <= today and born <= latest and _age(born, today) <= MAX_AGE_YEARS):
        return False
    expiry = eb.visa_expiry
    if expiry is None:
        if eb.kind == EntryBasisKind.VISA:
            return False
    elif not (type(expiry) is date and earliest <= expiry <= latest):
        return False
    planned = r.planned_exit_checkpoint
    if planned is not None and not (_plain_text(planned, ids) and planned in catalogue.checkpoints):
        return False
    return catalogue.refusal(cp.id, et) is None


def _registration(r: Registration, now: datetime, limits: Limits) -> Iterator[ValidationError]:
    yield from _enum(r.action, RegistrationAction, "action")
    yield from _text(r.registration_id, "registration_id", limits.max_id_chars)
    yield from _traveller(r.traveller, now, limits)
    yield from _enum(r.host_kind, HostKind, "host_kind")
    yield from _text(r.host_id, "host_id", limits.max_id_chars)
    if not isinstance(r.region, str) or not REGION.fullmatch(r.region):
        yield ValidationError("region", f"must be an ISO 3166-2:KZ region code such as KZ-75; got {r.region!r}")
    yield from _text(r.address, "address", limits.max_text_chars)
    from_ok = _is_date(r.valid_from) and _beyond(r.valid_from, "valid_from", limits) is None
    until_ok = _is_date(r.valid_until) and _beyond(r.valid_until, "valid_until", limits) is None
    yield from _date(r.valid_from, "valid_from", limits)
    yield from _date(r.valid_until, "valid_until", limits)
    if from_ok and until_ok and r.valid_until < r.valid_from:
        yield ValidationError("valid_until", "is before valid_from")


def _status_change(r: StatusChange, now: datetime, limits: Limits) -> Iterator[ValidationError]:
    yield from _enum(r.kind, StatusChangeKind, "kind")
    yield from _traveller(r.traveller, now, limits)
    yield from _text(r.authority, "authority", limits.max_text_chars)
    yield from _date(r.valid_from, "valid_from", limits, optional=True)
    yield from _date(r.valid_until, "valid_until", limits, optional=True)
    # EXPELLED without valid_until is valid: the ban lasts the rules' default_ban_years (docs/alerts.md, Step 6)
    vf, vu = r.valid_from, r.valid_until
    if vf is not None and vu is not None and _is_date(vf) and _is_date(vu) and vu < vf:
        yield ValidationError("valid_until", "is before valid_from")
    yield from _opt_text(r.reference, "reference", limits.max_id_chars)
    yield from _replacement(r, limits)


REPLACED_ONLY = "is only for DOCUMENT_REPLACED"


def _replacement(r: StatusChange, limits: Limits) -> Iterator[ValidationError]:
    """DOCUMENT_REPLACED names the new document (schema v3); no other kind does (docs/alerts.md, renewals)."""
    number, country = r.new_document_number, r.new_document_issuing_country
    if r.kind != StatusChangeKind.DOCUMENT_REPLACED:
        if number is not None:
            yield ValidationError("new_document_number", REPLACED_ONLY)
        if country is not None:
            yield ValidationError("new_document_issuing_country", REPLACED_ONLY)
        return
    ok = True
    if number is None:
        ok = False
        yield ValidationError("new_document_number", "is required for DOCUMENT_REPLACED (the new document)")
    else:
        for problem in _document_number(number, "new_document_number", limits):
            ok = False
            yield problem
    if country is None:
        ok = False
        yield ValidationError("new_document_issuing_country", "is required for DOCUMENT_REPLACED")
    else:
        for problem in _country(country, "new_document_issuing_country"):
            ok = False
            yield problem
    old = r.traveller.document if isinstance(r.traveller, Traveller) else None
    if ok and old is not None and isinstance(old.number, str):
        same = country == old.issuing_country
        if same and normalise_document_number(number or "") == normalise_document_number(old.number):
            yield ValidationError("new_document_number", "is the document it replaces (traveller.document)")


def _problems(
    record: Any, now: datetime, skew_s: int, limits: Limits, catalogue: Catalogue
) -> Iterator[ValidationError]:
    # The traveller's facts are judged at the event's own time, not at `now`: a replay years later, or the
    # sink and the processors reading the same message at different moments, must reach the same verdict.
    event_time: Any = getattr(record, "event_time", None)
    at: datetime = event_time if _aware(event_time) and event_time <= now else now
    if isinstance(record, Crossing):
        body = _crossing(record, at, limits, catalogue)
    elif isinstance(record, Registration):
        body = _registration(record, at, limits)
    elif isinstance(record, StatusChange):
        body = _status_change(record, at, limits)
    else:
        raise TypeError(f"only source events are validated (Crossing, Registration, StatusChange), not {record!r}")
    yield from _envelope(record, now, skew_s, limits)
    yield from body


# --- shape: plain values -> record --------------------------------------------------------------------------


def from_json(record_type_name: str, obj: Mapping[str, Any], *, now: datetime | None = None) -> Record:
    """The record of type `record_type_name` ("Crossing", ...) from plain JSON values.

    Times are ISO-8601 strings with a zone, dates "YYYY-MM-DD", enums by name, optional fields may be left out.
    For source events a missing `event_id` is derived from `source_system` + `source_record_id` (stable, see
    `schemas.ids.source_event_id`), and a missing `received_time` is `now` (when this publisher received it).
    A ``"record_type"`` key naming the type is allowed and ignored. Raises `ValidationError` naming the field.
    """
    cls = RECORD_TYPES.get(record_type_name)
    if cls is None:
        raise ValidationError("record_type", f"must be one of {', '.join(RECORD_TYPES)}; got {record_type_name!r}")
    if not isinstance(obj, Mapping):
        raise ValidationError("(record)", f"must be a JSON object; got {type(obj).__name__}")
    values = {k: v for k, v in obj.items() if k != "record_type"}
    if cls in SOURCE_RECORDS:
        if values.get("event_id") is None:
            if not values.get("source_record_id"):
                raise ValidationError("event_id", "is required (or give source_record_id to derive a stable one)")
            if not isinstance(values.get("source_system"), str):
                raise ValidationError("source_system", "must be a non-empty string")
            values["event_id"] = source_event_id(values["source_system"], values["source_record_id"])
        if values.get("received_time") is None and now is not None:
            values["received_time"] = now
    return parse_record(cls, values)


def parse_record(cls: type, values: Mapping[str, Any]) -> Any:
    """Build a `cls` record from plain values (or Python ones: datetimes, dates, enum members), by its schema."""
    schema = latest_version(cls.__name__).raw
    named: dict[str, Any] = {}
    return from_avro(cls, _parse(schema, values, "", named))


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _parse(schema: Any, value: Any, path: str, named: dict[str, Any]) -> Any:
    where = path or "(record)"
    if isinstance(schema, list):  # union: only ["null", T] is used in the contract
        if value is None:
            if "null" in schema:
                return None
            raise ValidationError(where, "must not be null")
        branches = [s for s in schema if s != "null"]
        return _parse(branches[0], value, path, named)
    if isinstance(schema, str):
        if schema in named:
            return _parse(named[schema], value, path, named)
        return _primitive(schema, None, value, where)
    kind = schema["type"]
    if kind in ("record", "enum"):
        named[schema["name"]] = schema
        named[f"{schema.get('namespace', 'kz.shekara')}.{schema['name']}"] = schema
    if kind == "record":
        if not isinstance(value, Mapping):
            raise ValidationError(where, f"must be an object; got {type(value).__name__}")
        known = {f["name"] for f in schema["fields"]}
        unknown = sorted(set(value) - known)
        if unknown:
            raise ValidationError(_join(path, unknown[0]), "is not a field of " + schema["name"])
        out: dict[str, Any] = {}
        for f in schema["fields"]:
            name, fpath = f["name"], _join(path, f["name"])
            if name in value:
                out[name] = _parse(f["type"], value[name], fpath, named)
            elif "default" in f:
                default = f["default"]
                out[name] = dict(default) if isinstance(default, dict) else default
            else:
                raise ValidationError(fpath, "is required")
        return out
    if kind == "enum":
        symbol = value.value if isinstance(value, StrEnum) else value
        if not isinstance(symbol, str) or symbol not in schema["symbols"]:
            raise ValidationError(where, f"must be one of {', '.join(schema['symbols'])}; got {value!r}")
        return symbol
    if kind == "array":
        if not isinstance(value, list | tuple):
            raise ValidationError(where, f"must be a list; got {type(value).__name__}")
        return [_parse(schema["items"], v, f"{path}[{i}]", named) for i, v in enumerate(value)]
    if kind == "map":
        if not isinstance(value, Mapping):
            raise ValidationError(where, f"must be an object; got {type(value).__name__}")
        return {str(k): _parse(schema["values"], v, _join(path, str(k)), named) for k, v in value.items()}
    return _primitive(kind, schema.get("logicalType"), value, where)


def _primitive(kind: str, logical: str | None, value: Any, where: str) -> Any:
    if logical == "timestamp-micros":
        return coerce_datetime(value, where)
    if logical == "date":
        return coerce_date(value, where)
    if kind == "string":
        if not isinstance(value, str):
            raise ValidationError(where, f"must be a string; got {type(value).__name__}")
        return value
    if kind in ("int", "long"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValidationError(where, f"must be a whole number; got {value!r}")
        return value
    if kind in ("float", "double"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValidationError(where, f"must be a number; got {value!r}")
        return float(value)
    if kind == "boolean":
        if not isinstance(value, bool):
            raise ValidationError(where, f"must be true or false; got {value!r}")
        return value
    if kind == "bytes":
        if isinstance(value, bytes):
            return value
        if isinstance(value, str):
            try:
                return base64.b64decode(value, validate=True)
            except ValueError:
                raise ValidationError(where, "must be base64-encoded bytes") from None
        raise ValidationError(where, f"must be base64-encoded bytes; got {type(value).__name__}")
    if kind == "null":
        if value is not None:
            raise ValidationError(where, "must be null")
        return None
    raise ValidationError(where, f"unsupported schema type {kind!r}")


def coerce_datetime(value: Any, field: str) -> datetime:
    """A timezone-aware datetime from a datetime or an ISO-8601 string with a zone (``Z`` or ``+05:00``)."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise ValidationError(field, f"must be an ISO-8601 date-time; got {value!r}") from None
    if not isinstance(value, datetime):
        raise ValidationError(field, f"must be a date-time; got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValidationError(field, "must include a timezone (e.g. 2025-06-01T08:30:00Z or +05:00)")
    return value


def coerce_date(value: Any, field: str) -> date:
    """A calendar date from a date or a ``YYYY-MM-DD`` string."""
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            raise ValidationError(field, f"must be a date YYYY-MM-DD; got {value!r}") from None
    if isinstance(value, datetime) or not isinstance(value, date):
        raise ValidationError(field, f"must be a calendar date; got {type(value).__name__}")
    return value
