"""Golden diagnostics: every broken spec in tests/diagnostics gives exactly its .err."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from metadsl.diagnostics import CODES, CompileError, render_all
from metadsl.driver import front_end

from .conftest import ROOT, golden

CASES = sorted((ROOT / "tests" / "diagnostics").glob("*.mrl"))
# Codes a file in tests/diagnostics cannot provoke; test_cli covers them.
NOT_FROM_A_FILE = {"E0001", "E0501", "E0601", "E0602", "E0603", "E0604", "E0605", "E0901"}  # run-time codes: tests/test_run_folder.py


def diagnose(path: Path) -> CompileError:
    with pytest.raises(CompileError) as info:
        front_end(str(path.relative_to(ROOT)), "ir")
    return info.value


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.stem)
def test_golden_message(case, at_root):
    e = diagnose(case)
    golden(case.with_suffix(".err"), render_all(e.diagnostics, getattr(e, "source", None)) + "\n")


CODED = [c for c in CASES if re.match(r"e\d{4}_", c.stem)]


@pytest.mark.parametrize("case", CODED, ids=lambda p: p.stem)
def test_case_name_states_its_code(case, at_root):
    """e0201_x.mrl must report E0201 (the name says what the case is for)."""
    assert f"E{case.stem[1:5]}" in {d.code for d in diagnose(case).diagnostics}


def test_every_code_has_a_golden_case():
    named = {f"E{c.stem[1:5]}" for c in CODED}
    assert set(CODES) - NOT_FROM_A_FILE - named == set()


def test_at_least_forty_cases():
    assert len(CASES) >= 40


def test_documented_codes_are_exactly_the_codes():
    doc = (ROOT / "docs" / "diagnostics.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^## (E\d{4})", doc, re.MULTILINE))
    assert documented == set(CODES)


def test_several_errors_in_one_run(at_root):
    assert len(diagnose(ROOT / "tests/diagnostics/e0101_several.mrl").diagnostics) == 3
    assert len(diagnose(ROOT / "tests/diagnostics/several_checker_errors.mrl").diagnostics) >= 3


def test_json_diagnostics_have_positions(at_root):
    e = diagnose(ROOT / "tests/diagnostics/e0201_unknown_rule.mrl")
    (d,) = e.diagnostics
    j = d.as_json()
    assert (j["code"], j["line"], j["column"]) == ("E0201", 20, 21)
    assert j["hint"] == "did you mean 'adam'?"
