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

REPO = Path(__file__).resolve().parent.parent
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
