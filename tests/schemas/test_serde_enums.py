"""A corrupt enum index is a decode error, as ClickHouse has it: fastavro alone reads index -1 as the last symbol.

The bytes are made by hand: the sample record is written with a schema in which every enum is an "int" (an enum's
wire encoding is a zig-zag int), carrying the symbols' indexes, one of them replaced by a bad one.
"""

from __future__ import annotations

import copy
import io
from collections.abc import Iterator
from typing import Any

import fastavro
import pytest

from schemas.convert import to_avro
from schemas.serde import SINGLE_OBJECT_MAGIC, DecodeError, Record, Serde, latest_version, schema_versions
from tests.schemas.test_serde import sample_crossing, sample_registration, sample_status_change

SOURCES: list[Record] = [sample_crossing(), sample_registration(), sample_status_change()]


def _ints(node: Any, enums: dict[str, list[str]]) -> Any:
    if isinstance(node, str):
        return "int" if node in enums else node
    if isinstance(node, list):
        return [_ints(n, enums) for n in node]
    if isinstance(node, dict):
        if node.get("type") == "enum":
            enums[node["name"]] = node["symbols"]
            return "int"
        return {k: _ints(v, enums) if k in ("type", "fields", "items") else v for k, v in node.items()}
    return node


def _enum_sites(schema: Any, value: Any, enums: dict[str, list[str]], path: str) -> Iterator[tuple[str, list[str]]]:
    """(path, symbols) of every enum value in `value` (read alongside its raw schema)."""
    if isinstance(schema, str):
        if schema in enums:
            yield path, enums[schema]
        return
    if isinstance(schema, list):  # a union: the branch that fits the value
        for branch in schema:
            if value is None and branch == "null":
                return
            if value is not None and branch != "null":
                yield from _enum_sites(branch, value, enums, path)
                return
        return
    kind = schema["type"]
    if kind == "enum":
        enums[schema["name"]] = schema["symbols"]
        yield path, schema["symbols"]
    elif kind == "record":
        for f in schema["fields"]:
            yield from _enum_sites(f["type"], value[f["name"]], enums, f"{path}.{f['name']}".lstrip("."))
    elif kind == "array":
        for i, item in enumerate(value):
            yield from _enum_sites(schema["items"], item, enums, f"{path}[{i}]")
    elif isinstance(kind, dict | list):
        yield from _enum_sites(kind, value, enums, path)


def _set(d: Any, path: str, new: Any) -> None:
    steps = path.replace("[", ".[").split(".")
    for step in steps[:-1]:
        d = d[int(step[1:-1])] if step.startswith("[") else d[step]
    last = steps[-1]
    if last.startswith("["):
        d[int(last[1:-1])] = new
    else:
        d[last] = new


def _cases() -> Iterator[tuple[str, str, int]]:
    for record in SOURCES:
        name = type(record).__name__
        sites = list(_enum_sites(latest_version(name).raw, to_avro(record), {}, ""))
        assert sites, f"{name} sample has no enum"
        for path, symbols in sites:
            for bad in (-1, -5, len(symbols), len(symbols) + 3):
                yield name, path, bad


def _bytes_with(record: Record, bad_path: str, bad: int, version: int | None = None) -> bytes:
    name = type(record).__name__
    sv = schema_versions()[name][-1 if version is None else version - 1]
    d = copy.deepcopy(to_avro(record))
    sites = list(_enum_sites(sv.raw, d, {}, ""))
    for path, symbols in sites:  # every enum as its (valid) index first
        index = symbols.index(_get(d, path))
        _set(d, path, bad if path == bad_path else index)
    enums: dict[str, list[str]] = {}
    schema = fastavro.parse_schema(_ints(sv.raw, enums))
    buf = io.BytesIO()
    buf.write(SINGLE_OBJECT_MAGIC + sv.fingerprint)
    fastavro.schemaless_writer(buf, schema, d)
    return buf.getvalue()


def _get(d: Any, path: str) -> Any:
    for step in path.replace("[", ".[").split("."):
        d = d[int(step[1:-1])] if step.startswith("[") else d[step]
    return d


@pytest.mark.parametrize(("name", "path", "bad"), list(_cases()))
def test_out_of_range_enum_index_is_a_decode_error(name: str, path: str, bad: int) -> None:
    record = next(r for r in SOURCES if type(r).__name__ == name)
    serde = Serde()
    assert serde.decode(_bytes_with(record, "", 0), "") == record  # the hand-made bytes are right when valid
    with pytest.raises(DecodeError) as caught:
        serde.decode(_bytes_with(record, path, bad), "")
    assert f"{path}: enum" in caught.value.reason and f"index {bad} is out of range" in caught.value.reason
    assert "\n" not in caught.value.reason


def test_older_writer_with_a_bad_enum_is_refused_too() -> None:
    record = sample_crossing()
    path, _ = next(iter(_enum_sites(schema_versions()["Crossing"][0].raw, to_avro(record), {}, "")))
    serde = Serde()
    good = _bytes_with(record, "", 0, version=1)
    assert serde.decode(good, "").event_id == record.event_id  # type: ignore[union-attr]
    with pytest.raises(DecodeError, match=r"Crossing v1 body: .*out of range"):
        serde.decode(_bytes_with(record, path, -1, version=1), "")


def test_every_enum_type_of_the_source_records_is_covered() -> None:
    """The samples reach every enum the source schemas define (none hides behind a null)."""
    for record in SOURCES:
        name = type(record).__name__
        defined: dict[str, list[str]] = {}
        _ints(latest_version(name).raw, defined)
        reached = {tuple(symbols) for _, symbols in _enum_sites(latest_version(name).raw, to_avro(record), {}, "")}
        assert {tuple(s) for s in defined.values()} <= reached, name
