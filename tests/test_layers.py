"""The package's layers (docs/architecture.md), checked on the real import graph.

``lint-imports`` (import-linter) checks the contracts in pyproject.toml; grimp, the graph it is
built on, finds import cycles and the private names that tools and the bench must not use.
Function-level (lazy) imports count like module-level ones.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"

#: Floor modules that every layer may use, tools and the bench included: the one home of
#: atomic writes, of the cache folder, of the version, of the op-spec grammar and of text tables.
SHARED_FLOOR = {"pixelmill._files", "pixelmill._cache", "pixelmill._version", "pixelmill._opspec", "pixelmill._text"}


def _lint(cwd: Path, src: Path) -> subprocess.CompletedProcess:
    env = {"PYTHONPATH": str(src), "PATH": str(LINT_IMPORTS.parent), "HOME": str(cwd), "LANG": "C.UTF-8"}
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope="module")
def graph():
    return grimp.build_graph("pixelmill")


def test_the_layer_contracts_hold():
    done = _lint(ROOT, ROOT / "src")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


def test_an_upward_import_breaks_the_contracts(tmp_path):
    # The check can fail: ops importing the CLI is an upward import, and lint-imports says so.
    shutil.copytree(ROOT / "src", tmp_path / "src")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / "src" / "pixelmill" / "ops" / "_invert.py"
    target.write_text(target.read_text() + "\n\ndef _upward():\n    from .. import cli  # noqa: F401\n")
    done = _lint(tmp_path, tmp_path / "src")
    assert done.returncode != 0
    assert "pixelmill.ops._invert -> pixelmill.cli" in done.stdout


def _cycles(graph) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found = []
    for root in sorted(graph.modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in graph.modules:
                    continue
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.find_modules_directly_imported_by(child)))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    group = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        group.append(member)
                        if member == node:
                            break
                    if len(group) > 1:
                        found.append(sorted(group))
    return found


def test_no_import_cycles_anywhere(graph):
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle():
    graph = grimp.ImportGraph()
    for name in ("a", "a.b", "a.c", "a.d"):
        graph.add_module(name)
    graph.add_import(importer="a.b", imported="a.c")
    graph.add_import(importer="a.c", imported="a.d")
    graph.add_import(importer="a.d", imported="a.b")
    assert _cycles(graph) == [["a.b", "a.c", "a.d"]]


def _private_outside(importer: str, imported: str) -> bool:
    """True when ``imported`` is a private module of another package than ``importer``'s."""
    own = ".".join(importer.split(".")[:2])
    if imported == own or imported.startswith(own + ".") or imported in SHARED_FLOOR:
        return False
    return any(part.startswith("_") for part in imported.split(".")[1:])


@pytest.mark.parametrize("package", ["pixelmill.tools", "pixelmill.bench"])
def test_tools_and_the_bench_use_public_names_only(graph, package):
    private = sorted(
        f"{importer} -> {imported}"
        for importer in graph.find_descendants(package) | {package}
        for imported in graph.find_modules_directly_imported_by(importer)
        if imported.startswith("pixelmill") and _private_outside(importer, imported)
    )
    assert private == []


def test_the_private_name_rule_tells_private_from_public():
    assert _private_outside("pixelmill.bench._ops", "pixelmill._api")
    assert _private_outside("pixelmill.tools.sheet", "pixelmill.batch._manifest")
    assert not _private_outside("pixelmill.tools.sheet", "pixelmill.batch")
    assert not _private_outside("pixelmill.bench._ops", "pixelmill.bench._records")
    assert not _private_outside("pixelmill.bench._ops", "pixelmill._files")
