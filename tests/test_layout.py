"""The package's layout: phases and runtime concerns as folders, and no import cycle."""

from __future__ import annotations

import ast
import subprocess
import sys

import networkx as nx

from metadsl.resources import runtime_modules

from .conftest import ROOT

PACKAGE = ROOT / "metadsl"


def _module_name(path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path) -> set[str]:
    """Every metadsl module `path` imports, at its top or inside a function."""
    here = _module_name(path)
    package = here if path.name == "__init__.py" else here.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("metadsl")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            if not base.startswith("metadsl"):
                continue
            for a in node.names:  # `from . import x` may name a module
                candidate = f"{base}.{a.name}"
                found.add(candidate if _exists(candidate) else base)
    return found


def _exists(module: str) -> bool:
    path = ROOT.joinpath(*module.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def test_the_package_has_no_import_cycle():
    graph = nx.DiGraph()
    for path in PACKAGE.rglob("*.py"):
        for target in _imports(path):
            if target != _module_name(path):
                graph.add_edge(_module_name(path), target)
    # a package's __init__ is imported with each of its modules: not an edge back
    graph.remove_edges_from([(u, v) for u, v in graph.edges if u.startswith(v + ".")])
    cycles = list(nx.simple_cycles(graph))
    assert not cycles, cycles


def test_the_runtime_has_only_its_concerns_and_errors_at_the_top():
    top = sorted(p.name for p in (PACKAGE / "runtime").iterdir() if p.suffix == ".py")
    assert top == ["__init__.py", "errors.py"]
    folders = {p.name for p in (PACKAGE / "runtime").iterdir() if p.is_dir() and
               p.name != "__pycache__"}
    assert folders == {"tasks", "learning", "memory", "execution", "runs"}
    names = [p.stem for p in (PACKAGE / "runtime").glob("*/*.py") if p.stem != "__init__"]
    assert len(names) == len(set(names)) == len(runtime_modules())  # short names are unique


def test_a_module_generated_before_the_layout_still_runs(tmp_path):
    """A train.py of the flat runtime (`from metadsl.runtime import rollout, runs, tasks`)."""
    legacy = ROOT / "tests" / "legacy" / "rl2_bandits_before_layout.py"
    r = subprocess.run([sys.executable, str(legacy), "--iterations", "1", "--set",
                        "evaluate.instances=20", "--set", "meta.meta_batch=8", "--out",
                        str(tmp_path / "run")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert (tmp_path / "run" / "eval.json").is_file()


def test_no_package_file_is_ignored_by_git():
    """A clean clone has every module: an ignore rule for run folders once matched runtime/runs/."""
    r = subprocess.run(["git", "ls-files", "--others", "--ignored", "--exclude-standard",
                        "metadsl", "specs", "tests", "bench", "scripts"],
                       cwd=ROOT, capture_output=True, text=True)
    if r.returncode != 0:
        return  # not a git checkout (an sdist): nothing to compare against
    ignored = [p for p in r.stdout.split() if "__pycache__" not in p and not p.endswith(".pyc")]
    assert ignored == []
