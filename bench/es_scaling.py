"""ES on Ray: seconds per generation with 1, 2, ... workers, and the scaling efficiency.

    python bench/es_scaling.py [--workers 1 2] [--generations 20] [--population 32]

Runs specs/es_cartpole.mrl for the same seed in the driver alone (`backend = local`) and
with `backend = ray, workers = W` for each W. All runs draw the same numbers (the Ray
execution's contract), so they roll out the same episodes and their times compare like
for like; the script checks that every run's metrics are identical. Generation 0 (Ray's
start) is left out of the times. Efficiency with W workers = t(1) / (W · t(W)); the issue's
target is ≥ 0.8 from 1 to 2 workers on 2 cores.
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "specs" / "es_cartpole.mrl"


def run(spec: Path, out: Path, options: list[str]) -> list[dict]:
    r = subprocess.run([sys.executable, "-m", "metadsl.cli", "run", str(spec), *options,
                        "--out", str(out)], cwd=ROOT, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"{spec.name} failed:\n{r.stderr[-3000:]}")
    with open(out / "metrics.csv") as f:
        return list(csv.DictReader(f))


def seconds_per_generation(rows: list[dict]) -> float:
    return (float(rows[-1]["wall_s"]) - float(rows[0]["wall_s"])) / (len(rows) - 1)


def numbers(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in ("wall_s", "charts/steps_per_second")}
            for r in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--generations", type=int, default=20)
    parser.add_argument("--population", type=int, default=32)
    parser.add_argument("--seed", type=int, default=1)
    a = parser.parse_args()
    options = ["--iterations", str(a.generations), "--threads", "1", "--seed", str(a.seed),
               "--set", f"evolve.pi.population={a.population}", "--set",
               "evaluate.instances=1"]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        local = run(SPEC, tmp / "local", options)
        rows = [("local (no Ray)", local)]
        for w in a.workers:
            spec = tmp / f"es_ray_{w}.mrl"
            spec.write_text(SPEC.read_text() +
                            f"\nschedule {{\n    backend = ray\n    workers = {w}\n}}\n")
            rows.append((f"ray, {w} worker{'s' if w > 1 else ''}",
                         run(spec, tmp / f"ray{w}", options)))
    for name, r in rows:
        if numbers(r) != numbers(local):
            sys.exit(f"{name}: its numbers differ from the local run's (the contract is "
                     "bitwise equality)")
    steps = (int(local[-1]["env_steps"]) - int(local[0]["env_steps"])) / (len(local) - 1)
    base = seconds_per_generation(rows[1][1])
    print(f"es_cartpole, population {a.population}, generations 1-{a.generations - 1} "
          f"(seed {a.seed}; {steps:,.0f} env-steps per generation; numbers identical in "
          "every run)\n")
    print("| execution | s / generation | env-steps/s | efficiency vs 1 worker |")
    print("|---|---:|---:|---:|")
    for (name, r), w in zip(rows, [None] + a.workers):
        t = seconds_per_generation(r)
        eff = "" if w is None else f"{base / (w * t):.2f}"
        print(f"| {name} | {t:.2f} | {steps / t:,.0f} | {eff} |")


if __name__ == "__main__":
    main()
