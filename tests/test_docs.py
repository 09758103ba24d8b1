"""The README's and docs' examples are checked: whole specs check clean, fragments parse,
and every `metadsl` command names a spec that exists and settings that spec has."""

from __future__ import annotations

import re
import shlex

import pytest

from metadsl.driver import front_end
from metadsl.front.parser import parse

from .conftest import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
DECLARATIONS = ("import", "from", "tasks", "model", "memory", "meta", "def", "loss", "inner",
                "outer", "evaluate", "schedule")


def blocks():
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        for match in re.finditer(r"```[a-z]*\n(.*?)```", text, re.S):
            line = text[:match.start()].count("\n") + 2
            yield f"{doc.name}:{line}", match.group(1)


SPECS = [(where, body) for where, body in blocks()
         if body.startswith("metadsl 1") and "\nouter " in body]
FRAGMENTS = [(where, body.replace("metadsl 1\n", "", 1).split("\n", 1)[-1]
              if body.startswith("metadsl 1") else body) for where, body in blocks()
             if body.split(None, 1)[0] in DECLARATIONS or body.startswith("metadsl 1")]
COMMANDS = [(where, line.split("#")[0].strip()) for where, body in blocks()
            for line in body.replace("\\\n", " ").splitlines()
            if re.match(r"(metadsl|\.venv/bin/metadsl) (run|compile|check|graph) specs/",
                        line.strip())]


def test_the_docs_have_examples():
    assert len(SPECS) >= 1 and len(FRAGMENTS) >= 8 and len(COMMANDS) >= 8


@pytest.mark.parametrize("where, body", SPECS, ids=[w for w, _ in SPECS])
def test_whole_specs_in_the_docs_check(where, body, tmp_path):
    path = tmp_path / "doc.mrl"
    path.write_text(body, encoding="utf-8")
    front_end(str(path), "check")  # raises CompileError with the diagnostics


@pytest.mark.parametrize("where, body", FRAGMENTS, ids=[w for w, _ in FRAGMENTS])
def test_spec_fragments_in_the_docs_parse(where, body):
    parse("metadsl 1\nspec fragment\n" + body, where)


@pytest.mark.parametrize("where, command", COMMANDS, ids=[w for w, _ in COMMANDS])
def test_commands_in_the_docs_name_real_specs_and_settings(where, command):
    words = shlex.split(command)
    spec = ROOT / words[2]
    assert spec.is_file(), f"{where}: no {words[2]}"
    if words[1] != "run":
        return
    paths = {a.path for a in front_end(str(spec), "program").program.args}
    for i, word in enumerate(words):
        if word == "--set":
            path = words[i + 1].split("=", 1)[0]
            assert path in paths, f"{where}: {words[2]} has no setting {path}"
