"""Schema evolution check: each version of a record must be backward and forward compatible with the previous.

Backward: the new schema (as reader) reads data written with the old one (consumers upgrade first).
Forward: the old schema (as reader) reads data written with the new one (producers upgrade first).
Uses the Apache `avro` package's checker, the port of the Java reference implementation.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import avro.schema
from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType


def _load(path: Path) -> avro.schema.Schema:
    return avro.schema.parse(Path(path).read_text())


def _problems(direction: str, reader: avro.schema.Schema, writer: avro.schema.Schema) -> list[str]:
    result = ReaderWriterCompatibilityChecker().get_compatibility(reader, writer)
    if result.compatibility is SchemaCompatibilityType.compatible:
        return []
    kinds = ", ".join(sorted(i.value for i in result.incompatibilities))
    where = ", ".join(sorted(result.locations))
    why = "; ".join(sorted(result.messages))
    return [f"{direction}: {kinds} at {where}: {why}"]


def check_compatibility(old_path: Path | str, new_path: Path | str) -> list[str]:
    """Problems that make `new_path` not fully (backward and forward) compatible with `old_path`; empty = ok."""
    old, new = _load(Path(old_path)), _load(Path(new_path))
    return _problems("backward (new reads old)", new, old) + _problems("forward (old reads new)", old, new)


def consecutive_pairs() -> list[tuple[Path, Path]]:
    """Every (v<N>, v<N+1>) pair of schema files of the same record in schemas/avro."""
    from schemas.serde import schema_versions

    pairs: list[tuple[Path, Path]] = []
    for versions in schema_versions().values():
        pairs.extend((a.path, b.path) for a, b in itertools.pairwise(versions))
    return pairs


# Versions allowed to be backward compatible only (new reads old), each with its reason. Such a version imposes an
# upgrade order: every consumer (processors, sink) reads it before any producer writes it.
BACKWARD_ONLY = {
    "status_change.v3.avsc": "adds the kind DOCUMENT_REPLACED, which a v2 reader cannot read (its enum has no default)",
}


def check_all() -> dict[str, list[str]]:
    """Compatibility problems of every consecutive version pair, keyed "old.avsc -> new.avsc"; all empty = ok."""
    return {
        f"{old.name} -> {new.name}": [
            p for p in check_compatibility(old, new) if not (new.name in BACKWARD_ONLY and p.startswith("forward"))
        ]
        for old, new in consecutive_pairs()
    }
