"""bench/reproduce.py: each family's default over seeds, mean ± standard error, paired."""

from __future__ import annotations

import json
import math
import subprocess
import sys

from .conftest import ROOT


def test_quick_reproduction_tables_every_seed_and_its_paired_differences(tmp_path):
    out = tmp_path / "repro"
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "reproduce.py"), "--quick",
                        "--family", "rl2_bandits", "--family", "maml_sine", "--seeds", "1", "2",
                        "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    tables = json.loads((out / "results.json").read_text())["tables"]
    assert set(tables) == {"rl2_bandits", "maml_sine"}
    for family, rows in tables.items():
        runs = {s: json.loads((out / family / f"seed_{s}" / "eval.json").read_text())
                for s in (1, 2)}
        assert runs[1]["seed"] == 1 and runs[2]["seed"] == 2
        assert len(rows) == len(runs[1]["results"])  # no two eval.json rows merged
        for row in rows:
            values = [row["seeds"][str(s)] for s in (1, 2)]
            mean = sum(values) / 2
            assert math.isclose(row["mean"], mean)
            assert math.isclose(row["stderr"], abs(values[0] - values[1]) / 2)  # n = 2
    learner = [r for r in tables["maml_sine"] if r["method"] == "maml_sine"]
    assert {r["adapt_steps"] for r in learner} == {0, 1, 10}
    assert all("diff_to_learner" in r for r in tables["maml_sine"] if r["method"] != "maml_sine")
    text = (out / "results.md").read_text()
    assert "### maml_sine" in text and "bench/reproduce.py --family maml_sine" in text
