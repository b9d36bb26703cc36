"""Publish a file of events (JSON lines or an Avro container file) through `EventProducer`.

Reading is pure (`read_events` yields each line's record or the `ValidationError` that refuses it); publishing
goes through the same client integrators use, so the same validation, keying and spooling apply.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fastavro

from producers.client import EventProducer, SourceEvent
from schemas.convert import RECORD_TYPES
from schemas.records import DeadLetter
from schemas.serde import Record, schema_for
from schemas.validation import ValidationError, from_json, parse_record
from shekara.settings import Settings

AVRO_MAGIC = b"Obj\x01"
PUBLISHABLE = ("Crossing", "Registration", "StatusChange")


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

    def __str__(self) -> str:
        return f"line {self.line}: {self.field}: {self.message}"


@dataclass
class PublishReport:
    accepted: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    dead_lettered: int = 0  # rejections also written to the dead-letter topic
    sent: int = 0
    spooled: int = 0
    pending: int = 0  # accepted but not yet acknowledged by the broker when publishing ended (kept in the spool)
    spool_dir: Path | None = None


def record_type_name(name: str) -> str:
    """ "crossing", "status-change", "StatusChange" -> "StatusChange"; raises ValidationError if unknown."""
    wanted = name.replace("_", "").replace("-", "").lower()
    for known in PUBLISHABLE:
        if known.lower() == wanted:
            return known
    raise ValidationError("record_type", f"must be one of {', '.join(PUBLISHABLE)}; got {name!r}")


def read_events(path: Path, record_type: str | None = None, *, now: datetime | None = None) -> Iterator[FileEvent]:
    """Every event in a JSON-lines or Avro container file, each as its record or the error refusing it.

    File-level problems (unknown --type, an Avro file of another record) raise `ValidationError` at once,
    before anything is read or published.
    """
    now = now or datetime.now(UTC)
    forced = record_type_name(record_type) if record_type else None
    with path.open("rb") as fo:
        if fo.read(len(AVRO_MAGIC)) != AVRO_MAGIC:
            return _read_json_lines(path, forced, now)
        fo.seek(0)
        writer_schema = fastavro.reader(fo).writer_schema
    written = writer_schema.get("name", "") if isinstance(writer_schema, dict) else ""
    name = forced or record_type_name(str(written).rsplit(".", 1)[-1])
    return _read_avro(path, name)


def _read_json_lines(path: Path, forced: str | None, now: datetime) -> Iterator[FileEvent]:
    with path.open("rb") as fo:
        for number, raw in enumerate(fo, start=1):
            line = raw.rstrip(b"\r\n")
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                why = f"{exc.msg} at column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else "not UTF-8"
                yield FileEvent(number, line, forced, ValidationError("(line)", f"not valid JSON: {why}"))
                continue
            if not isinstance(obj, dict):
                error = ValidationError("(line)", f"must be a JSON object; got {type(obj).__name__}")
                yield FileEvent(number, line, forced, error)
                continue
            name = forced
            try:
                name = forced or _type_from_field(obj)
                yield FileEvent(number, line, name, from_json(name, obj, now=now))
            except ValidationError as exc:
                yield FileEvent(number, line, name, exc)


def _type_from_field(obj: dict[str, Any]) -> str:
    name = obj.get("record_type")
    if not isinstance(name, str):
        raise ValidationError("record_type", "is required when --type is not given")
    return record_type_name(name)


def _read_avro(path: Path, name: str) -> Iterator[FileEvent]:
    cls = RECORD_TYPES[name]
    with path.open("rb") as fo:
        # Resolve whatever version the file was written with to the latest schema (same rules as the topics).
        for number, d in enumerate(fastavro.reader(fo, reader_schema=schema_for(cls)), start=1):
            raw = json.dumps(d, default=str, sort_keys=True).encode()
            if not isinstance(d, dict):
                error = ValidationError("(record)", f"must be an Avro record; got {type(d).__name__}")
                yield FileEvent(number, raw, name, error)
                continue
            try:
                yield FileEvent(number, raw, name, parse_record(cls, d))
            except ValidationError as exc:
                yield FileEvent(number, raw, name, exc)


def dead_letter_for(event: FileEvent, error: ValidationError, path: Path, settings: Settings) -> DeadLetter:
    """The dead letter of a refused line: the raw line, the reason and the field, for ops to see."""
    topics = {"Crossing": settings.topics.crossings, "Registration": settings.topics.registrations}
    topics["StatusChange"] = settings.topics.status_changes
    meant_for = topics.get(event.record_type or "", f"file:{path.name}")
    reason = f"{path.name} line {event.line}: {error.message}"
    return DeadLetter(meant_for, None, None, None, event.raw, "validate", reason, error.field, datetime.now(UTC))


def publish_file(
    path: Path,
    settings: Settings,
    *,
    record_type: str | None = None,
    flush_timeout: float = 30.0,
    dead_letters: bool = True,
    producer: EventProducer | None = None,
) -> PublishReport:
    """Publish every valid event in `path`; refused ones are reported with their line and field, and (unless
    `dead_letters` is False) written to the dead-letter topic with the reason."""
    report = PublishReport()
    events = read_events(path, record_type)  # file-level problems raise here, before connecting
    own = producer is None
    client = producer or EventProducer(settings, client_id="shekara-publish")
    sent0, spooled0 = client.stats["sent"], client.stats["spooled"]
    report.spool_dir = client.spool_dir

    def refuse(event: FileEvent, error: ValidationError) -> None:
        report.rejected.append(Rejection(event.line, error.field, error.message))
        if dead_letters:
            client.publish_dead_letter(dead_letter_for(event, error, path, settings))
            report.dead_lettered += 1

    try:
        for event in events:
            item = event.result
            if isinstance(item, ValidationError):
                refuse(event, item)
                continue
            if not isinstance(item, SourceEvent):  # read_events only yields PUBLISHABLE types
                raise TypeError(f"not a source event: {type(item).__name__}")
            try:
                client.publish(item)
            except ValidationError as exc:
                refuse(event, exc)
                continue
            report.accepted += 1
        report.pending = client.flush(flush_timeout)
    finally:
        if own:
            client.close(timeout=0)
    report.sent = client.stats["sent"] - sent0
    report.spooled = client.stats["spooled"] - spooled0
    return report
