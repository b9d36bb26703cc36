"""Imports follow the data flow: a package imports only packages below it.

    shekara (foundation) < schemas < producers < streams < sinks < harness

- `shekara` is the foundation (settings, rules, reference data, pseudonyms, logs, topics, broker): it imports
  none of the others.
- `schemas` (the event contract) imports only the foundation.
- `producers`, `streams`, `sinks` are the runtime stages in data-flow order; a stage may import an earlier one
  (`sinks.sink` reads the output topic names of `streams.outputs`), never a later one.
- `harness` (CLI, demo, faults, stack, benchmarks, evaluation, simulator) sits on top; no runtime package
  imports it.

Every import counts, at any depth (an import inside a function too). Relative imports are resolved against the
importing module. The checker is a pure function over {module path: source}, unit-tested on a tiny tree below.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ORDER = ("shekara", "schemas", "producers", "streams", "sinks", "harness")
RANK = {name: i for i, name in enumerate(ORDER)}


def _imported(tree: ast.AST, package_parts: list[str]) -> list[tuple[int, str]]:
    """(line, absolute module name) for every import statement in the tree."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the importing package
                base = package_parts[: len(package_parts) - node.level + 1]
                name = ".".join([*base, node.module] if node.module else base)
            else:
                name = node.module or ""
            found.append((node.lineno, name))
    return found


def upward_imports(sources: Mapping[str, str]) -> list[str]:
    """'path:line: a imports b (upward)' for every import that goes up the layer order.

    `sources` maps a repo-relative path (``streams/web.py``) to its source text.
    """
    problems: list[str] = []
    for path, text in sorted(sources.items()):
        parts = Path(path).with_suffix("").parts
        own = parts[0]
        if own not in RANK:
            continue
        package_parts = list(parts[:-1])  # a module's package; for __init__.py, the package itself
        for line, name in _imported(ast.parse(text, filename=path), package_parts):
            top = name.split(".")[0]
            if top in RANK and RANK[top] > RANK[own]:
                problems.append(f"{path}:{line}: {own} imports {name} ({top} is above {own})")
    return problems


def _tree_sources() -> dict[str, str]:
    return {
        str(path.relative_to(REPO)): path.read_text(encoding="utf-8")
        for package in ORDER
        for path in sorted((REPO / package).rglob("*.py"))
    }


def test_every_package_imports_only_below_it() -> None:
    sources = _tree_sources()
    assert len(sources) > 50  # the walk found the packages
    problems = upward_imports(sources)
    assert not problems, "imports against the data flow:\n" + "\n".join(problems)


def test_checker_names_an_upward_import_at_any_depth() -> None:
    tree = {
        "shekara/rules.py": "import json\nfrom shekara.settings import Settings\n",
        "schemas/records.py": "from shekara.codes import Severity\n",
        "streams/worker.py": "from schemas import records\n\ndef run():\n    from harness.stack import Stack\n",
        "sinks/sink.py": "from streams.outputs import OUTPUT_TOPICS\n",
        "producers/client.py": "import sinks.writer\n",
        "harness/cli.py": "import sinks.cli\nimport streams.cli\n",
    }
    assert upward_imports(tree) == [
        "producers/client.py:1: producers imports sinks.writer (sinks is above producers)",
        "streams/worker.py:4: streams imports harness.stack (harness is above streams)",
    ]


def test_checker_resolves_relative_imports() -> None:
    assert upward_imports({"shekara/x.py": "from . import settings\n"}) == []
    assert upward_imports({"shekara/sub/x.py": "from ...harness import cli\n"}) == [
        "shekara/sub/x.py:1: shekara imports harness (harness is above shekara)"
    ]


# --- one record factory, one scoring (issue 19, item 2) -------------------------------------------------------

RECORD_CLASSES = frozenset({"Crossing", "Registration", "StatusChange", "Traveller", "Document"})
FACTORY = "harness/samples.py"
# Where a record may still be constructed directly, and why: each makes it from something else, or the direct
# construction is what it is about.
BUILT_ELSEWHERE = {
    "schemas/convert.py": "wire dicts to records",
    "streams/core/identity.py": "the renewed document of a DOCUMENT_REPLACED change",
    "harness/simulator/materialise.py": "the simulator's planned events to records",
    "harness/simulator/plan.py": "a planned traveller from its drawn attributes",
    "harness/bench/simulator.py": "the floor it times is a plain constructor loop",
    "tests/schemas/test_serde.py": "builds every field from a values dict to round-trip it",
    "tests/schemas/test_validation.py": "the record parse_record must give, written out",
}
SCORING = "harness/scoring.py"
SCORING_FUNCTIONS = frozenset({"score", "final_alerts"})


def _called_name(call: ast.Call) -> str | None:
    f = call.func
    return f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else None


def single_homes(sources: Mapping[str, str]) -> list[str]:
    """'path:line: ...' for every record built outside the factory (and the allowed places) and every module-level
    `score`/`final_alerts` defined outside the scoring module."""
    problems: list[str] = []
    for path, text in sorted(sources.items()):
        tree = ast.parse(text, filename=path)
        if path != FACTORY and path not in BUILT_ELSEWHERE:
            for node in ast.walk(tree):
                if isinstance(node, ast.Call) and _called_name(node) in RECORD_CLASSES:
                    problems.append(f"{path}:{node.lineno}: builds {_called_name(node)}( - use {FACTORY}")
        if path != SCORING:
            for stmt in tree.body:
                if isinstance(stmt, ast.FunctionDef) and stmt.name in SCORING_FUNCTIONS:
                    problems.append(f"{path}:{stmt.lineno}: defines {stmt.name} - use {SCORING}")
    return problems


def test_records_are_built_by_the_one_factory_and_scored_by_the_one_scoring() -> None:
    sources = {
        str(path.relative_to(REPO)): path.read_text(encoding="utf-8")
        for package in (*ORDER, "tests")
        for path in sorted((REPO / package).rglob("*.py"))
    }
    assert FACTORY in sources and SCORING in sources
    assert not (set(BUILT_ELSEWHERE) - set(sources)), "an allowed place is gone: drop it from BUILT_ELSEWHERE"
    problems = single_homes(sources)
    assert not problems, "a second factory or scoring:\n" + "\n".join(problems)


def test_single_homes_names_a_copy() -> None:
    tree = {
        FACTORY: "def crossing():\n    return Crossing(1)\n",
        "schemas/convert.py": "x = Traveller(Document(1))\n",
        "harness/bench/new.py": "from schemas import records\n\ny = records.Registration(1)\n",
        "harness/demo.py": "def score(a, b):\n    return 1\n\n\nclass R:\n    def final_alerts(self):\n        pass\n",
    }
    assert single_homes(tree) == [
        "harness/bench/new.py:3: builds Registration( - use harness/samples.py",
        "harness/demo.py:1: defines score - use harness/scoring.py",
    ]


# --- the tests mirror the package tree; the core's functions are short (issue 19, items 4 and 5) ---------------

# Beside the packages' mirrors: cases written from the rules, run end to end (not tied to one package).
TEST_ROOMS = frozenset({*ORDER, "deploy", "golden"})
CORE_FUNCTION_LINES = 90  # "no function in the core over ~80 lines"


def misplaced_tests(paths: list[str]) -> list[str]:
    """Test modules (tests/...test_*.py) not under tests/<package>/ for a package of the tree (or golden/deploy),
    and mirrors of packages' sub-packages that the package does not have."""
    problems = []
    for path in paths:
        parts = Path(path).parts
        if parts[0] != "tests" or not parts[-1].startswith("test_"):
            continue
        if len(parts) < 3 or parts[1] not in TEST_ROOMS:
            problems.append(f"{path}: not under tests/<package>/ ({', '.join(sorted(TEST_ROOMS))})")
        elif parts[1] in ORDER and len(parts) > 3 and not (REPO.joinpath(*parts[1:-1])).is_dir():
            problems.append(f"{path}: {'/'.join(parts[1:-1])} is not a package of the tree")
    return problems


def test_tests_mirror_the_package_tree() -> None:
    paths = [str(p.relative_to(REPO)) for p in sorted((REPO / "tests").rglob("test_*.py"))]
    assert len(paths) > 50
    assert misplaced_tests(paths) == []
    assert misplaced_tests(["tests/test_x.py", "tests/misc/test_y.py", "tests/streams/nowhere/test_z.py"]) == [
        "tests/test_x.py: not under tests/<package>/ (deploy, golden, harness, producers, schemas, shekara, sinks, "
        "streams)",
        "tests/misc/test_y.py: not under tests/<package>/ (deploy, golden, harness, producers, schemas, shekara, "
        "sinks, streams)",
        "tests/streams/nowhere/test_z.py: streams/nowhere is not a package of the tree",
    ]


def test_no_function_in_the_core_is_long() -> None:
    long = []
    for path in sorted((REPO / "streams" / "core").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > CORE_FUNCTION_LINES:
                    long.append(f"{path.relative_to(REPO)}:{node.lineno}: {node.name} is {lines} lines")
    assert not long, "split these (a step of the core should be readable whole):\n" + "\n".join(long)
