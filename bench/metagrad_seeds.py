"""Meta-gradient RL: learned η = {γ, λ} against the same agent with η fixed at its poor
initial value, over seeds, at equal environment steps.

    python bench/metagrad_seeds.py [--seeds 5] [--iterations 300]

Both arms run specs/metagrad.mrl; the fixed arm sets the meta step size to 1e-12 (η
does not move). Prints each seed's held-out return and final γ, λ, and the paired mean
difference; two runs at a time (one torch thread each).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(seed: int, fixed: bool, iterations: int, out: Path) -> dict:
    folder = out / f"{'fixed' if fixed else 'learned'}-{seed}"
    sets = ["--set", "meta.gamma.lr=1e-12"] if fixed else []
    subprocess.run([sys.executable, "-m", "metadsl.cli", "run", "specs/metagrad.mrl",
                    "--seed", str(seed), "--iterations", str(iterations), "--out", str(folder),
                    *sets], cwd=ROOT, check=True, capture_output=True,
                   env=dict(os.environ, OMP_NUM_THREADS="1"))
    result = json.loads((folder / "eval.json").read_text())["results"]
    last = (folder / "metrics.csv").read_text().strip().splitlines()
    header, final = last[0].split(","), last[-1].split(",")
    return {"return": next(r["mean"] for r in result if r["method"] == "metagrad"),
            "gamma": float(final[header.index("charts/gamma")]),
            "lam": float(final[header.index("charts/lam")])}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--out", type=Path, default=Path("/tmp/metadsl-metagrad-seeds"))
    a = parser.parse_args()
    jobs = [(seed, fixed) for seed in range(1, a.seeds + 1) for fixed in (False, True)]
    with ThreadPoolExecutor(2) as pool:
        results = dict(zip(jobs, pool.map(lambda j: run(*j, a.iterations, a.out), jobs)))
    print("seed  learned return (γ, λ)      fixed return (γ, λ)")
    diffs = []
    for seed in range(1, a.seeds + 1):
        l, f = results[(seed, False)], results[(seed, True)]
        diffs.append(l["return"] - f["return"])
        print(f"{seed:>4}  {l['return']:7.2f} ({l['gamma']:.3f}, {l['lam']:.3f})   "
              f"{f['return']:7.2f} ({f['gamma']:.3f}, {f['lam']:.3f})")
    spread = statistics.stdev(diffs) / len(diffs) ** 0.5 if len(diffs) > 1 else 0.0
    print(f"learned − fixed: {statistics.mean(diffs):+.2f} ± {spread:.2f} "
          f"(wins {sum(d > 0 for d in diffs)}/{len(diffs)})")


if __name__ == "__main__":
    main()
