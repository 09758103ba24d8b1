"""Meta-gradient RL: learned η = {γ, λ} against the same agent with η fixed at its poor
initial value, over seeds, at equal environment steps; learned with the paper's
approximation (no trace) and with the exact trace.

    python bench/metagrad_seeds.py [--seeds 5] [--iterations 300] [--figure PNG]

Every arm runs specs/metagrad.mrl; the fixed arm sets the meta step size to 1e-12 (η
does not move), the traced arm carries half the accumulated dθ/dη into each update
(`meta.through.trace=0.5`; the exact trace, 1, diverges on this task). Prints each seed's
held-out return and final γ, λ, and the paired mean differences; draws γ and λ over
training for the learned arms. Two runs at a time (one torch thread each).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ARMS = {"learned": [], "learned, traced": ["--set", "meta.through.trace=0.5"],
        "fixed": ["--set", "meta.gamma.lr=1e-12"]}


def run(seed: int, arm: str, iterations: int, out: Path) -> dict:
    folder = out / f"{arm.replace(', ', '-')}-{seed}"
    subprocess.run([sys.executable, "-m", "metadsl.cli", "run", "specs/metagrad.mrl",
                    "--seed", str(seed), "--iterations", str(iterations), "--out", str(folder),
                    *ARMS[arm]], cwd=ROOT, check=True, capture_output=True,
                   env=dict(os.environ, OMP_NUM_THREADS="1"))
    result = json.loads((folder / "eval.json").read_text())["results"]
    with open(folder / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    return {"return": next(r["mean"] for r in result if r["method"] == "metagrad"),
            "gamma": [float(r["charts/gamma"]) for r in rows],
            "lam": [float(r["charts/lam"]) for r in rows]}


def figure(results: dict, seeds: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4), sharey=True)
    colours = {"learned": "#1f5fbf", "learned, traced": "#d0661b", "fixed": "#999999"}
    for ax, key, symbol in ((axes[0], "gamma", "γ"), (axes[1], "lam", "λ")):
        for arm, colour in colours.items():
            for seed in range(1, seeds + 1):
                ax.plot(results[(seed, arm)][key], color=colour, alpha=0.7, linewidth=1,
                        label=arm if seed == 1 else None)
        ax.set_title(f"{symbol} over meta-updates ({seeds} seeds)")
        ax.set_xlabel("outer iteration")
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--out", type=Path, default=Path("/tmp/metadsl-metagrad-seeds"))
    parser.add_argument("--figure", type=Path, help="draw γ and λ over training to this PNG")
    a = parser.parse_args()
    jobs = [(seed, arm) for seed in range(1, a.seeds + 1) for arm in ARMS]
    with ThreadPoolExecutor(2) as pool:
        results = dict(zip(jobs, pool.map(lambda j: run(*j, a.iterations, a.out), jobs)))
    print("seed  " + "".join(f"{arm + ': return (γ, λ)':<34}" for arm in ARMS))
    for seed in range(1, a.seeds + 1):
        cells = [f"{r['return']:7.2f} ({r['gamma'][-1]:.3f}, {r['lam'][-1]:.3f})"
                 for r in (results[(seed, arm)] for arm in ARMS)]
        print(f"{seed:>4}  " + "".join(f"{c:<34}" for c in cells))
    for arm in ("learned", "learned, traced"):
        diffs = [results[(s, arm)]["return"] - results[(s, "fixed")]["return"]
                 for s in range(1, a.seeds + 1)]
        spread = statistics.stdev(diffs) / len(diffs) ** 0.5 if len(diffs) > 1 else 0.0
        print(f"{arm} − fixed: {statistics.mean(diffs):+.2f} ± {spread:.2f} "
              f"(wins {sum(d > 0 for d in diffs)}/{len(diffs)})")
    if a.figure:
        figure(results, a.seeds, a.figure)
        print(f"figure: {a.figure}")


if __name__ == "__main__":
    main()
