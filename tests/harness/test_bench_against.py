"""`shekara bench --against REF` (harness/bench/against.py): the order of the runs, the medians and ratios, the
temporary worktree; a real short run of the working tree against HEAD (slow)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import typer

from harness.bench import against
from harness.bench.against import Round
from harness.ops_cli import AGAINST, COMPONENTS, select_components
from shekara.settings import REPO_ROOT, Settings

HEAD = "working tree (HEAD 12345678)"


def test_trees_take_turns_ref_first_in_every_round() -> None:
    assert against.interleave(["ref", "head"], 3) == [
        (0, "ref"),
        (0, "head"),
        (1, "ref"),
        (1, "head"),
        (2, "ref"),
        (2, "head"),
    ]
    assert against.interleave(["ref", "head"], 1) == [(0, "ref"), (0, "head")]


def test_cpu_is_interpolated_at_the_first_and_last_event() -> None:
    samples = [(10.0, 1.0), (10.1, 1.05), (10.2, 1.25), (10.3, 1.25)]
    # 10.05 is half way from 1.0 to 1.05; 10.15 half way from 1.05 to 1.25
    assert against.cpu_between(samples, 10.05, 10.15) == pytest.approx(1.15 - 1.025)
    assert against.cpu_between(samples, 10.0, 10.3) == pytest.approx(0.25)
    with pytest.raises(ValueError, match="outside"):
        against.cpu_between(samples, 9.9, 10.2)  # start-up before the first sample would be missed


def test_a_worker_run_becomes_a_round_of_rate_and_cpu_per_event() -> None:
    data = {
        "events": 1000,
        "first_event_wall": 100.0,
        "last_output_wall": 102.0,
        "samples": [[99.0, 5.0], [100.0, 5.5], [102.0, 5.7], [102.5, 5.7]],
    }
    r = against.processor_round("ref", 0, data)
    assert r.rate == pytest.approx(500.0)
    assert r.cpu_us == pytest.approx(0.2 / 1000 * 1e6)  # the 0.5 s of start-up CPU before the first event is left out
    assert (r.units, r.seconds) == (1000, pytest.approx(2.0))


def _rounds(tree: str, rates: list[float], cpus: list[float]) -> list[Round]:
    return [Round(tree, n, rate, cpu, 1000, 1.0) for n, (rate, cpu) in enumerate(zip(rates, cpus, strict=True))]


def test_medians_every_round_and_the_ratio_working_tree_to_ref() -> None:
    ref = _rounds("4235b877", [100.0, 300.0, 200.0], [10.0, 12.0, 11.0])
    head = _rounds(HEAD, [150.0, 160.0, 400.0], [13.0, 14.0, 15.0])
    s = against.summarise(head)
    assert (s.rate, s.rates, s.cpu_us) == (160.0, [150.0, 160.0, 400.0], 14.0)
    # interleaved as they ran: the working tree's rounds are told from REF's by label
    runs = [r for pair in zip(ref, head, strict=True) for r in pair]
    out = against.results("4235b8773d89", "4235b8773d8990ad", HEAD, runs, [])
    rate, cpu = out
    assert (rate.component, rate.unit, rate.value, rate.baseline_value) == ("processor", "events/s", 160.0, 200.0)
    assert rate.baseline_name == "4235b877 (same run)"
    assert rate.ratio == pytest.approx(0.8)
    assert "within noise" in (rate.target or "")  # 160 is within REF's 100-300
    assert rate.details["4235b877 events/s by round"] == [100, 300, 200]
    assert rate.details["order"][:2] == ["4235b877 round 1", f"{HEAD} round 1"]
    assert (cpu.value, cpu.baseline_value, cpu.unit) == (14.0, 11.0, "µs CPU/event")
    assert cpu.ratio == pytest.approx(14 / 11)
    assert "WORSE than noise" in (cpu.target or "")  # 14 above REF's worst round, 12


def test_one_round_does_not_judge_noise() -> None:
    assert "no spread" in against.verdict(1.0, [5.0], higher_is_better=True)
    assert "within" in against.verdict(5.0, [5.0, 9.0], higher_is_better=True)
    assert "WORSE" in against.verdict(4.9, [5.0, 9.0], higher_is_better=True)


def _worktrees() -> str:
    return subprocess.run(
        ["git", "-C", str(REPO_ROOT), "worktree", "list", "--porcelain"], capture_output=True, text=True, check=True
    ).stdout


def test_the_worktree_is_ref_detached_and_removed_afterwards() -> None:
    head = against.resolve("HEAD")
    with against.worktree("HEAD") as path:
        assert (path / "shekara" / "settings.py").exists()
        assert f"worktree {path}" in _worktrees()
        at = subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
        assert at.stdout.strip() == head
        branch = subprocess.run(["git", "-C", str(path), "branch", "--show-current"], capture_output=True, text=True)
        assert branch.stdout.strip() == ""  # detached
    assert not path.exists() and not path.parent.exists()
    assert str(path) not in _worktrees()


def test_an_unknown_ref_is_refused_before_anything_runs() -> None:
    with pytest.raises(ValueError, match="no-such-ref"):
        against.resolve("no-such-ref")


def test_the_driver_runs_the_trees_own_code_with_its_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHEKARA_PARTITIONS", "1")  # a caller's setting must not reach either tree
    tree = against.Tree("ref", tmp_path / "tree", "ref1")
    env = against.tree_env(tree, Settings(broker_url="kafka://127.0.0.1:1"), tmp_path)
    assert env["PYTHONPATH"] == str(tmp_path / "tree")
    assert env["SHEKARA_BROKER_URL"] == "kafka://127.0.0.1:1"
    assert "SHEKARA_PARTITIONS" not in env


def test_against_is_a_component_only_with_a_ref() -> None:
    assert select_components(None) == list(COMPONENTS)
    assert select_components(None, "4235b87") == [*COMPONENTS, AGAINST]
    assert select_components("against", "4235b87") == [AGAINST]
    with pytest.raises(typer.BadParameter):
        select_components("against")


@pytest.mark.slow
@pytest.mark.integration
def test_a_short_run_against_head_itself(settings: Settings) -> None:
    lines: list[str] = []
    out = against.compare(settings, "HEAD", rounds=1, events=1_000, rows=3_000, say=lines.append)
    assert [(r.component, r.unit) for r in out] == [
        ("processor", "events/s"),
        ("processor", "µs CPU/event"),
        ("sink", "rows/s"),
        ("sink", "µs CPU/row"),
    ]
    for r in out:
        assert r.baseline_name == "HEAD (same run)"
        assert r.value > 0 and r.baseline_value is not None and r.baseline_value > 0
        assert r.details["order"][0] == "HEAD round 1" and r.details["order"][1].startswith("working tree (HEAD ")
    assert out[0].details["units_by_round"] == [1_000, 1_000]
    assert out[2].details["units_by_round"] == [3_000, 3_000]
    assert not any("shekara-against-" in line for line in _worktrees().splitlines())
