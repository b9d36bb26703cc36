"""Publish a file of events (JSON lines or an Avro container file) through `EventProducer`.

Reading is pure (`read_events` yields each line's record or the `ValidationError` that refuses it); publishing
goes through the same client integrators use, so the same validation, keying and spooling apply.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

import fastavro

from producers.client import EventProducer, Outcome, SourceEvent, prepare, strings
from schemas.convert import RECORD_TYPES
from schemas.records import DeadLetter
from schemas.serde import Record, Serde, failure_reason, schema_for
from schemas.validation import ValidationError, from_json, parse_record
from shekara import metrics
from shekara.settings import Settings

AVRO_MAGIC = b"Obj\x01"
PUBLISHABLE = ("Crossing", "Registration", "StatusChange")
# A reason or field quoting a huge value is cut to this, on the terminal and in the dead letter.
MAX_REASON_CHARS = 500
MAX_FIELD_CHARS = 200
OUTCOME_DESTINATIONS = {"sent": "broker", "spooled": "spool"}  # `shekara_events_out_total{destination}`


@dataclass(frozen=True, slots=True)
class FileEvent:
    """One line (JSON lines) or record (Avro) of a file: the record, or the error refusing it."""

    line: int  # 1-based line of a JSON-lines file, or record number in an Avro file
    raw: bytes  # the line as read (Avro: the record as JSON), kept for the dead-letter topic
    record_type: str | None  # when known
    result: Record | ValidationError


@dataclass(frozen=True, slots=True)
class Rejection:
    line: int  # 1-based line of a JSON-lines file, or record number in an Avro file
    field: str
    message: str

    @classmethod
    def of(cls, line: int, error: ValidationError) -> Rejection:
        """The error, its field and message cut to a line's length (a message may quote a huge value)."""
        return cls(line, _cut(error.field, MAX_FIELD_CHARS), _cut(error.message, MAX_REASON_CHARS))

    def __str__(self) -> str:
        return f"line {self.line}: {self.field}: {self.message}"


@dataclass
class PublishReport:
    """What became of every event of a file: read = sent + spooled + rejected + pending."""

    read: int = 0  # events read: non-blank lines of a JSON-lines file, or records of an Avro file
    valid: int = 0  # passed every check before sending (a dry run stops here)
    sent: int = 0  # acknowledged by the broker
    spooled: int = 0  # written to the on-disk spool (broker unreachable): the spool sends them, in order
    rejected: list[Rejection] = field(default_factory=list)  # refused by a check, the Kafka client or the broker
    refused_by_broker: int = 0  # of `rejected`: refused in a delivery report, after passing every check
    dead_lettered: int = 0  # rejections passed to the dead-letter topic, of which:
    dead_letters_sent: int = 0  # acknowledged by the broker
    dead_letters_spooled: int = 0  # written to the spool
    spool_left: int = 0  # messages waiting in the spool when publishing ended (this run's and earlier ones)
    drained: int = 0  # messages the spool sent during this run (earlier runs' first)
    spool_dir: Path | None = None
    dry_run: bool = False

    @property
    def pending(self) -> int:
        """Valid events with no outcome yet (only with a caller's producer, still open, after a flush timeout)."""
        return 0 if self.dry_run else self.valid - self.sent - self.spooled - self.refused_by_broker


def record_type_name(name: str) -> str:
    """ "crossing", "status-change", "StatusChange" -> "StatusChange"; raises ValidationError if unknown."""
    wanted = name.replace("_", "").replace("-", "").lower()
    for known in PUBLISHABLE:
        if known.lower() == wanted:
            return known
    raise ValidationError("record_type", f"must be one of {', '.join(PUBLISHABLE)}; got {name!r}")


def read_events(
    path: Path, record_type: str | None = None, *, now: datetime | None = None, max_line_bytes: int = 4 << 20
) -> Iterator[FileEvent]:
    """Every event in a JSON-lines or Avro container file, each as its record or the error refusing it.

    Nothing in a line stops the reading: a line that is too long (`max_line_bytes`, not read into memory), not
    UTF-8, not JSON, or not valid Unicode text (a lone surrogate escape) is yielded with its error, and the next
    line is read. A corrupt Avro block ends the reading of an Avro file (nothing after it can be located).

    File-level problems (unknown --type, an Avro file of another record) raise `ValidationError` at once,
    before anything is read or published.
    """
    now = now or datetime.now(UTC)
    forced = record_type_name(record_type) if record_type else None
    with path.open("rb") as fo:
        if fo.read(len(AVRO_MAGIC)) != AVRO_MAGIC:
            return _read_json_lines(path, forced, now, max_line_bytes)
        fo.seek(0)
        try:
            writer_schema = fastavro.reader(fo).writer_schema
        except Exception as exc:  # a damaged header: fastavro raises anything from KeyError to its own errors
            raise ValidationError("(file)", f"not a readable Avro container file: {failure_reason(exc)}") from None
    written = writer_schema.get("name", "") if isinstance(writer_schema, dict) else ""
    name = forced or record_type_name(str(written).rsplit(".", 1)[-1])
    return _read_avro(path, name)


def _read_json_lines(path: Path, forced: str | None, now: datetime, max_line_bytes: int) -> Iterator[FileEvent]:
    with path.open("rb") as fo:
        for number, line, size in _bounded_lines(fo, max_line_bytes):
            if size > max_line_bytes:
                error = ValidationError("(line)", f"is {size:,} bytes; the limit is {max_line_bytes:,} (not read)")
                yield FileEvent(number, line, forced, error)
                continue
            if not line.strip():
                continue
            obj, unreadable = _json_object(line, first=number == 1)
            if unreadable is not None:
                yield FileEvent(number, line, forced, unreadable)
                continue
            assert obj is not None
            name = forced
            try:
                name = forced or _type_from_field(obj)
                yield FileEvent(number, line, name, from_json(name, obj, now=now))
            except ValidationError as exc:
                yield FileEvent(number, line, name, exc)
            except (ValueError, TypeError, OverflowError, RecursionError) as exc:  # bad input, never a traceback
                yield FileEvent(number, line, name, ValidationError("(line)", f"cannot be read: {exc}"))


def _bounded_lines(fo: BinaryIO, limit: int) -> Iterator[tuple[int, bytes, int]]:
    """(number, line without its end, size in bytes) of each line. A line over `limit` bytes is read in chunks
    and dropped, never held whole: only its first `limit` bytes come back, with its full size."""
    number = 0
    while raw := fo.readline(limit + 1):
        number += 1
        if raw.endswith(b"\n") or len(raw) <= limit:  # the whole line (the last one may have no end)
            line = raw.rstrip(b"\r\n")
            yield number, line, len(line)
            continue
        size, tail = len(raw), raw[-2:]
        while not tail.endswith(b"\n") and (more := fo.readline(1 << 20)):
            size, tail = size + len(more), (tail + more)[-2:]
        size -= len(tail) - len(tail.rstrip(b"\r\n"))
        yield number, raw[:limit].rstrip(b"\r"), size


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]", re.ASCII)


def _json_object(line: bytes, *, first: bool) -> tuple[dict[str, Any] | None, ValidationError | None]:
    """The line as a JSON object, or why it is not one: invalid UTF-8, invalid JSON, lone surrogates."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, ValidationError("(line)", f"not valid UTF-8: byte 0x{line[exc.start]:02x} at byte {exc.start + 1}")
    if first:
        text = text.removeprefix("\ufeff")  # a byte-order mark some editors write
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, ValidationError("(line)", f"not valid JSON: {exc.msg} at column {exc.colno}")
    except RecursionError:
        return None, ValidationError("(line)", "not valid JSON: nested too deeply")
    if not isinstance(obj, dict):
        return None, ValidationError("(line)", f"must be a JSON object; got {type(obj).__name__}")
    # A \ud800 escape is valid JSON but not text: it could never be encoded (UTF-8, Avro, ClickHouse).
    if _SURROGATE_ESCAPE.search(line):
        for where, value in strings(obj):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return None, ValidationError(
                    where, "contains a lone surrogate (\\ud800-\\udfff): not valid Unicode text"
                )
    return obj, None


def _type_from_field(obj: dict[str, Any]) -> str:
    name = obj.get("record_type")
    if not isinstance(name, str):
        raise ValidationError("record_type", "is required when --type is not given")
    return record_type_name(name)


def _read_avro(path: Path, name: str) -> Iterator[FileEvent]:
    cls = RECORD_TYPES[name]
    with path.open("rb") as fo:
        # Resolve whatever version the file was written with to the latest schema (same rules as the topics).
        records = iter(fastavro.reader(fo, reader_schema=schema_for(cls)))
        for number in itertools.count(1):
            try:
                d = next(records)
            except StopIteration:
                return
            except Exception as exc:  # a corrupt block: fastavro cannot find the records after it
                why = f"unreadable Avro from this record on, reading stopped: {failure_reason(exc)}"
                error = ValidationError("(file)", why)
                yield FileEvent(number, b"", name, error)
                return
            raw = json.dumps(d, default=str, sort_keys=True).encode()
            if not isinstance(d, dict):
                error = ValidationError("(record)", f"must be an Avro record; got {type(d).__name__}")
                yield FileEvent(number, raw, name, error)
                continue
            try:
                yield FileEvent(number, raw, name, parse_record(cls, d))
            except ValidationError as exc:
                yield FileEvent(number, raw, name, exc)
            except (ValueError, TypeError, OverflowError) as exc:  # bad input, never a traceback
                yield FileEvent(number, raw, name, ValidationError("(record)", f"cannot be read: {exc}"))


def dead_letter_for(event: FileEvent, rejection: Rejection, path: Path, settings: Settings) -> DeadLetter:
    """The dead letter of a refused line: the line, the reason and the field, bounded so it can always be sent
    (the line keeps its first `limits.dead_letter_payload_bytes`)."""
    topics = {"Crossing": settings.topics.crossings, "Registration": settings.topics.registrations}
    topics["StatusChange"] = settings.topics.status_changes
    meant_for = topics.get(event.record_type or "", f"file:{_cut(path.name, MAX_FIELD_CHARS)}")
    reason = f"{_cut(path.name, MAX_FIELD_CHARS)} line {event.line}: {rejection.message}"
    room = settings.limits.dead_letter_payload_bytes
    if len(event.raw) > room:
        reason += f" (line cut to its first {room:,} bytes)"
    value = event.raw[:room]
    return DeadLetter(meant_for, None, None, None, value, "validate", reason, rejection.field, datetime.now(UTC))


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class _Outcomes:
    """What became of each valid line and each dead letter, as the producer reports it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # reports come from the io thread and, when spooling, the publishing one
        self.lines: Counter[Outcome] = Counter()
        self.letters: Counter[Outcome] = Counter()
        self.refused: list[tuple[FileEvent, ValidationError]] = []  # lines refused by the broker

    def of(self, event: FileEvent) -> Callable[[Outcome, str], None]:
        def report(outcome: Outcome, reason: str) -> None:
            with self._lock:
                self.lines[outcome] += 1
                if outcome in OUTCOME_DESTINATIONS:
                    metrics.events_out(OUTCOME_DESTINATIONS[outcome])
                if outcome == "refused":
                    self.refused.append((event, ValidationError("(message)", f"refused by the broker: {reason}")))

        return report

    def of_letter(self, outcome: Outcome, _reason: str) -> None:
        with self._lock:
            self.letters[outcome] += 1


def publish_file(
    path: Path,
    settings: Settings,
    *,
    record_type: str | None = None,
    flush_timeout: float = 30.0,
    dead_letters: bool = True,
    dry_run: bool = False,
    producer: EventProducer | None = None,
    on_reject: Callable[[Rejection], None] | None = None,
) -> PublishReport:
    """Publish every valid event in `path`, reading the whole file whatever it holds.

    Each refused line (unreadable, invalid, oversize, or refused by the broker) becomes a `Rejection` with its
    line number and field, passed to `on_reject` as it is found and (unless `dead_letters` is False) written to
    the dead-letter topic with the reason. `dry_run`: check every line as publishing would (validation,
    encoding, size) and send nothing; no broker needed.
    """
    report = PublishReport(dry_run=dry_run)
    events = read_events(path, record_type, max_line_bytes=settings.limits.max_line_bytes)  # raises before connecting
    outcomes = _Outcomes()
    own = producer is None and not dry_run
    client = None if dry_run else producer or EventProducer(settings, client_id="shekara-publish")
    serde = client.serde if client is not None else Serde.from_settings(settings)
    if client is not None:
        report.spool_dir = client.spool_dir
        drained0 = client.stats["drained"]
        if settings.metrics.publish_port:  # while it runs: rates, spool depth (`shekara.metrics`)
            metrics.serve(
                settings.metrics.publish_port, settings.metrics.bind, settings.metrics.password.get_secret_value()
            )
            metrics.spool_depth(lambda: client.pending() if client.spooling else 0)

    def refuse(event: FileEvent, error: ValidationError, *, dead_letter: bool = dead_letters) -> None:
        rejection = Rejection.of(event.line, error)
        report.rejected.append(rejection)
        if on_reject is not None:
            on_reject(rejection)
        if dead_letter and client is not None:
            letter = dead_letter_for(event, rejection, path, settings)
            client.publish_dead_letter(letter, on_outcome=outcomes.of_letter)
            metrics.dead_letter(letter.stage, letter.reason)
            report.dead_lettered += 1

    handled = 0  # refusals from delivery reports already reported
    try:
        for event in events:
            report.read += 1
            metrics.count_in("file")
            item = event.result
            if isinstance(item, ValidationError):
                refuse(event, item)
                continue
            if not isinstance(item, SourceEvent):  # read_events only yields PUBLISHABLE types
                raise TypeError(f"not a source event: {type(item).__name__}")
            try:
                if client is None:
                    prepare(item, settings, serde)
                else:
                    client.publish(item, on_outcome=outcomes.of(event))
            except ValidationError as exc:
                refuse(event, exc)
                continue
            report.valid += 1
        if client is not None:
            client.flush(flush_timeout)
            # Refused in a delivery report, after the line was read: report and dead-letter them now.
            handled = len(outcomes.refused)
            for event, error in outcomes.refused[:handled]:
                refuse(event, error)
            if handled and dead_letters:
                client.flush(flush_timeout)
    finally:
        if own and client is not None:
            client.close(timeout=0)
    if client is not None:
        for event, error in outcomes.refused[handled:]:  # refused after the flush timed out: the client is closed
            refuse(event, error, dead_letter=False)
        report.sent, report.spooled = outcomes.lines["sent"], outcomes.lines["spooled"]
        report.refused_by_broker = outcomes.lines["refused"]
        report.dead_letters_sent, report.dead_letters_spooled = outcomes.letters["sent"], outcomes.letters["spooled"]
        report.spool_left = client.spool_left if own else client.pending()
        report.drained = client.stats["drained"] - drained0
    return report
