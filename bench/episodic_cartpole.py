"""Episodic control on CartPole-v1: NEC and MFEC against a DQN written in the language,
over paired seeds, at equal episodes.

    python bench/episodic_cartpole.py [--seeds 3] [--episodes 300] [--out DIR]

Runs specs/nec.mrl, specs/mfec.mrl and specs/dqn_cartpole.mrl for each seed (one outer
iteration is one training episode, so `--iterations` is the episode count; the three
specs share the network, the replay and the gradient steps per episode where they have
them). Prints, per spec and seed, the mean training return over episodes 1–100 and
250–300 and at 100 and 300 episodes (the mean of the 10 episodes before), each seed's
paired difference NEC − DQN, and the held-out return of the final policy. Two runs at a
time (one torch thread each).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPECS = ("nec", "mfec", "dqn_cartpole")


def run(spec: str, seed: int, episodes: int, out: Path) -> dict:
    folder = out / f"{spec}-{seed}"
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "metadsl.cli", "run", f"specs/{spec}.mrl",
                    "--seed", str(seed), "--iterations", str(episodes), "--out", str(folder),
                    "--force"], cwd=ROOT, check=True, capture_output=True,
                   env=dict(os.environ, OMP_NUM_THREADS="1"))
    with open(folder / "metrics.csv") as f:
        returns = [float(r["charts/return"]) for r in csv.DictReader(f)]
    result = json.loads((folder / "eval.json").read_text())["results"]
    return {"returns": returns, "minutes": (time.perf_counter() - start) / 60,
            "held_out": next(r["mean"] for r in result if r["method"] == spec),
            "random": next(r["mean"] for r in result if r["method"] == "random")}


def window(returns: list[float], first: int, last: int) -> float:
    """Mean training return of episodes first..last (1-based, inclusive)."""
    part = returns[first - 1:last]
    return statistics.mean(part) if part else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--episodes", type=int, default=300)
    parser.add_argument("--specs", nargs="+", default=list(SPECS), choices=SPECS)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "runs" / "episodic")
    args = parser.parse_args()
    jobs = [(spec, seed) for seed in range(1, args.seeds + 1) for spec in args.specs]
    with ThreadPoolExecutor(2) as pool:
        done = dict(zip(jobs, pool.map(lambda job: run(*job, args.episodes, args.out), jobs)))
    late = (max(1, args.episodes - 49), args.episodes)
    print(f"| spec | seed | episodes 1–100 | at 100 (91–100) | episodes {late[0]}–{late[1]} "
          f"| at {args.episodes} | held-out | random | minutes |")
    print("|---|---|---|---|---|---|---|---|---|")
    for (spec, seed), r in done.items():
        x = r["returns"]
        print(f"| {spec} | {seed} | {window(x, 1, 100):.1f} | {window(x, 91, 100):.1f} | "
              f"{window(x, *late):.1f} | {window(x, args.episodes - 9, args.episodes):.1f} | "
              f"{r['held_out']:.1f} | {r['random']:.1f} | {r['minutes']:.1f} |")
    if {"nec", "dqn_cartpole"} <= set(args.specs):
        for name, span in (("at 100", (91, 100)), (f"at {args.episodes}",
                                                    (args.episodes - 9, args.episodes)),
                           ("episodes 1–100", (1, 100))):
            diffs = [window(done[("nec", s)]["returns"], *span) -
                     window(done[("dqn_cartpole", s)]["returns"], *span)
                     for s in range(1, args.seeds + 1)]
            print(f"NEC − DQN {name}: " + ", ".join(f"{d:+.1f}" for d in diffs))


if __name__ == "__main__":
    main()
