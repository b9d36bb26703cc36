"""The Avro contract: one documented schema file per record and version, in step with the dataclasses,
and every schema version compatible (backward and forward) with the one before it."""

from __future__ import annotations

import json
import types
import typing
from dataclasses import fields, is_dataclass
from datetime import date, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import pytest
from fastavro.schema import fingerprint, to_parsing_canonical_form

from schemas.compat import check_all, check_compatibility, consecutive_pairs
from schemas.convert import RECORD_TYPES
from schemas.serde import AVRO_DIR, latest_version, schema_versions

NAMESPACE = "kz.shekara"


def _walk_named(schema: Any, out: list[dict[str, Any]]) -> None:
    if isinstance(schema, list):
        for s in schema:
            _walk_named(s, out)
    elif isinstance(schema, dict):
        kind = schema["type"]
        if kind in ("record", "enum"):
            out.append(schema)
        if kind == "record":
            for f in schema["fields"]:
                _walk_named(f["type"], out)
        elif kind == "array":
            _walk_named(schema["items"], out)
        elif kind == "map":
            _walk_named(schema["values"], out)


def _all_versions() -> list[Any]:
    return [sv for versions in schema_versions().values() for sv in versions]


def test_every_record_type_has_a_schema_file_per_version() -> None:
    assert set(schema_versions()) == set(RECORD_TYPES)
    for name, versions in schema_versions().items():
        assert [v.version for v in versions] == list(range(1, len(versions) + 1))
        for v in versions:
            assert v.path.parent == AVRO_DIR
            assert v.path.name.endswith(f".v{v.version}.avsc")
            assert v.raw["name"] == name
            assert v.raw["namespace"] == NAMESPACE


@pytest.mark.parametrize("sv", _all_versions(), ids=lambda sv: sv.path.name)
def test_every_record_field_and_enum_is_documented(sv: Any) -> None:
    named: list[dict[str, Any]] = []
    _walk_named(sv.raw, named)
    assert named, "no named types found"
    for schema in named:
        assert schema.get("doc", "").strip(), f"{schema['name']} has no doc"
        for f in schema.get("fields", []):
            assert f.get("doc", "").strip(), f"{schema['name']}.{f['name']} has no doc"


def _unwrap_optional(hint: Any) -> tuple[Any, bool]:
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        assert len(args) == 1, f"only X | None unions are allowed, got {hint}"
        return args[0], True
    return hint, False


def _assert_type_matches(hint: Any, avro: Any, where: str, named: dict[str, Any]) -> None:
    if isinstance(avro, str) and avro in named:
        avro = named[avro]
    if isinstance(avro, dict) and avro.get("type") in ("record", "enum"):
        named[avro["name"]] = avro
        named[f"{NAMESPACE}.{avro['name']}"] = avro
    origin = typing.get_origin(hint)
    if isinstance(hint, type) and is_dataclass(hint):
        assert avro["type"] == "record" and avro["name"] == hint.__name__, where
        _assert_record_matches(hint, avro, where, named)
    elif isinstance(hint, type) and issubclass(hint, StrEnum):
        assert avro["type"] == "enum" and avro["name"] == hint.__name__, where
        assert avro["symbols"] == [m.value for m in hint], f"{where}: enum symbols differ from {hint.__name__}"
    elif hint is datetime:
        assert avro == {"type": "long", "logicalType": "timestamp-micros"}, where
    elif hint is date:
        assert avro == {"type": "int", "logicalType": "date"}, where
    elif origin is list:
        assert avro["type"] == "array", where
        _assert_type_matches(typing.get_args(hint)[0], avro["items"], f"{where}[]", named)
    elif origin is dict:
        assert avro["type"] == "map" and typing.get_args(hint)[0] is str, where
        _assert_type_matches(typing.get_args(hint)[1], avro["values"], f"{where}{{}}", named)
    else:
        expected = {str: "string", int: ("int", "long"), bytes: "bytes", bool: "boolean", float: "double"}[hint]
        assert avro in (expected if isinstance(expected, tuple) else (expected,)), f"{where}: {avro} vs {hint}"


def _assert_record_matches(cls: type, avro: dict[str, Any], where: str, named: dict[str, Any]) -> None:
    hints = typing.get_type_hints(cls)
    dc_fields = [f.name for f in fields(cls)]  # type: ignore[arg-type]
    avro_fields = [f["name"] for f in avro["fields"]]
    assert dc_fields == avro_fields, f"{where}: field names/order differ: {dc_fields} vs {avro_fields}"
    for f in avro["fields"]:
        inner, optional = _unwrap_optional(hints[f["name"]])
        path = f"{where}.{f['name']}"
        if optional:
            assert isinstance(f["type"], list) and f["type"][0] == "null", f"{path}: optional needs ['null', T]"
            assert "default" in f and f["default"] is None, f"{path}: optional needs default null"
            _assert_type_matches(inner, f["type"][1], path, named)
        else:
            assert not (isinstance(f["type"], list) and "null" in f["type"]), f"{path}: nullable but not optional"
            _assert_type_matches(inner, f["type"], path, named)


@pytest.mark.parametrize("name", sorted(RECORD_TYPES))
def test_dataclass_matches_latest_schema(name: str) -> None:
    _assert_record_matches(RECORD_TYPES[name], latest_version(name).raw, name, {})


def test_consecutive_versions_are_backward_and_forward_compatible() -> None:
    results = check_all()
    assert "crossing.v1.avsc -> crossing.v2.avsc" in results, "Crossing needs a v2 to test evolution"
    assert {k: v for k, v in results.items() if v} == {}


def test_crossing_v2_is_a_genuine_evolution() -> None:
    v1, v2 = schema_versions()["Crossing"][:2]
    names_v1 = {f["name"] for f in v1.raw["fields"]}
    added = [f for f in v2.raw["fields"] if f["name"] not in names_v1]
    assert added, "v2 must differ from v1"
    assert all(f.get("default", "missing") is None for f in added), "added fields need a null default"
    assert v1.fingerprint != v2.fingerprint


def _mutated(tmp_path: Path, base: Path, mutate: Any) -> Path:
    raw = json.loads(base.read_text())
    mutate(raw)
    out = tmp_path / f"mutated.{base.name}"
    out.write_text(json.dumps(raw))
    return out


def test_checker_catches_a_removed_field_without_default(tmp_path: Path) -> None:
    base = latest_version("Crossing").path
    new = _mutated(tmp_path, base, lambda r: r.update(fields=[f for f in r["fields"] if f["name"] != "purpose"]))
    problems = check_compatibility(base, new)
    assert problems and all("forward" in p for p in problems)
    assert "purpose" in problems[0]


def test_checker_catches_an_added_field_without_default(tmp_path: Path) -> None:
    base = latest_version("Registration").path
    extra = {"name": "floor", "type": "int", "doc": "Floor of the flat."}
    new = _mutated(tmp_path, base, lambda r: r["fields"].append(extra))
    problems = check_compatibility(base, new)
    assert len(problems) == 1 and problems[0].startswith("backward") and "floor" in problems[0]


def test_checker_catches_a_removed_enum_symbol_and_a_type_change(tmp_path: Path) -> None:
    base = latest_version("Alert").path

    def drop_symbol(r: dict[str, Any]) -> None:
        enum = next(f for f in r["fields"] if f["name"] == "severity")["type"]
        enum["symbols"] = [s for s in enum["symbols"] if s != "CRITICAL"]

    assert any("missing_enum_symbols" in p for p in check_compatibility(base, _mutated(tmp_path, base, drop_symbol)))

    def retype(r: dict[str, Any]) -> None:
        next(f for f in r["fields"] if f["name"] == "reason")["type"] = "int"

    problems = check_compatibility(base, _mutated(tmp_path, base, retype))
    assert len(problems) == 2 and all("type_mismatch" in p for p in problems)


def test_pairs_cover_every_multi_version_record() -> None:
    multi = {name for name, versions in schema_versions().items() if len(versions) > 1}
    paired = {latest_version(name).path for name in multi}
    assert paired <= {new for _, new in consecutive_pairs()}


def test_fingerprints_are_crc64_avro_of_the_canonical_form() -> None:
    # Known vectors from the Avro specification's test data (share/test/data/schema-tests.txt), signed LE int64.
    for primitive, expected in {"null": 7195948357588979594, "int": 8247732601305521295}.items():
        fp = bytes.fromhex(fingerprint(to_parsing_canonical_form(primitive), "CRC-64-AVRO"))
        assert int.from_bytes(fp, "little", signed=True) == expected
    fps = [sv.fingerprint for sv in _all_versions()]
    assert len(set(fps)) == len(fps) and all(len(fp) == 8 for fp in fps)
