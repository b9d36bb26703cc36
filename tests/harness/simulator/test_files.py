"""`write_files` and `shekara simulate`: Avro container files, ground truth, summary; same config, same bytes."""

from __future__ import annotations

import base64
import hashlib
import json
from collections import Counter
from pathlib import Path

import fastavro
from typer.testing import CliRunner

from harness.cli import app
from harness.simulator import SimulationConfig, simulate, write_files
from harness.simulator.materialise import RECORD_NAME
from harness.simulator.output import FILES, MALFORMED_FILE, SUMMARY_FILE, TRUTH_FILE, read_truth

KEY = b"simulator-test-key"


def _hashes(directory: Path) -> dict[str, str]:
    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(directory.iterdir()) if f.is_file()}


def test_write_files_is_deterministic_and_independent_of_worker_count(tmp_path: Path) -> None:
    config = SimulationConfig(days=5, seed=21, scale=0.004, pseudonym_key=KEY)
    one = write_files(config, tmp_path / "a", workers=1)
    again = write_files(config, tmp_path / "b", workers=1)
    parallel = write_files(config, tmp_path / "c", workers=2)
    assert _hashes(tmp_path / "a") == _hashes(tmp_path / "b") == _hashes(tmp_path / "c")
    assert one.messages == again.messages == parallel.messages > 0
    names = set(_hashes(tmp_path / "a"))
    assert names == {*FILES.values(), MALFORMED_FILE, TRUTH_FILE, SUMMARY_FILE}
    other = write_files(SimulationConfig(days=5, seed=22, scale=0.004, pseudonym_key=KEY), tmp_path / "d", workers=1)
    assert _hashes(tmp_path / "d")["crossings.avro"] != _hashes(tmp_path / "a")["crossings.avro"]
    assert other.messages > 0


def test_files_hold_the_same_events_as_the_stream(tmp_path: Path) -> None:
    config = SimulationConfig(days=4, seed=8, scale=0.004, pseudonym_key=KEY)
    summary = write_files(config, tmp_path, workers=1)
    stream = list(simulate(config))
    want: Counter[tuple[str, str]] = Counter()
    for ev in stream:
        if ev.record is not None:
            want[(ev.kind, ev.record.event_id)] += 1
    got: Counter[tuple[str, str]] = Counter()
    for kind, name in FILES.items():
        with (tmp_path / name).open("rb") as f:
            reader = fastavro.reader(f)
            assert reader.writer_schema["name"].endswith(RECORD_NAME[kind])  # the contract's record
            for rec in reader:
                got[(kind, rec["event_id"])] += 1
    assert got == want  # duplicates included, as sent
    bad = [json.loads(line) for line in (tmp_path / MALFORMED_FILE).read_text().splitlines()]
    assert all(b["reason"] and b["kind"] in FILES for b in bad)
    raw = sorted(base64.b64decode(b["value"]) for b in bad)
    assert raw == sorted(ev.raw for ev in stream if ev.raw is not None)
    truth = read_truth(tmp_path / TRUTH_FILE)
    assert sum(1 for x in truth if x["kind"] == "malformed") == len(bad) == sum(summary.malformed.values())
    alerts = [x for x in truth if x["kind"] == "alert"]
    assert all(x["alert_id"] and x["due_time"] and x["evidence_event_ids"] for x in alerts)
    saved = json.loads((tmp_path / SUMMARY_FILE).read_text())
    assert saved["messages"] == summary.messages == len(stream)
    assert saved["events"] == summary.events
    assert sum(saved["expected_alerts"].values()) == len(alerts)


def test_cli_simulate_writes_a_run(tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = CliRunner().invoke(
        app, ["simulate", "--days", "2", "--seed", "5", "--scale", "0.003", "--out", str(out), "--no-faults"]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((out / SUMMARY_FILE).read_text())
    assert summary["config"]["days"] == 2 and summary["duplicates"] == 0 and summary["malformed"] == {}
    assert summary["events"]["crossing"] > 0
    bad = CliRunner().invoke(app, ["simulate", "--days", "2", "--start", "1 June"])
    assert bad.exit_code == 2 and "--start" in bad.output
