"""ES on CartPole-v1: specs/es_cartpole.mrl against EvoTorch at the same population,
noise, step size and episodes.

    .venv/bin/pip install -e '.[bench]'   # EvoTorch: the yardstick, not a dependency
    python bench/es_vs_evotorch.py [--seeds 1 2 3] [--generations 100] [--execution batched]

EvoTorch runs PGPE with mirrored sampling, centered ranks, a fixed σ (its σ learning rate
0) and Adam on the centre — the same rule as `es(population = 32, sigma = 0.1, lr = 0.1)`
up to EvoTorch's own details (its gradient is scaled by σ, its policy acts by argmax)
— on the same network (an MLP of 16 tanh units), one episode per member, in one
process. Both are scored on 10 fresh episodes of the final parameters. Reported: each
seed's generations and environment steps per second over the whole run (a policy
that balances longer pays for longer episodes) and the final score; the issue's
target is ours ÷ EvoTorch's ≥ 1.0 at an equal or better final score.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import gymnasium as gym
import torch

ROOT = Path(__file__).resolve().parent.parent
POPULATION, SIGMA, LR, HIDDEN, EPISODES = 32, 0.1, 0.1, 16, 10


def ours(seed: int, generations: int, execution: str, out: Path) -> tuple[float, float, float]:
    """specs/es_cartpole.mrl run with `schedule { execution = ... }` added."""
    out.mkdir(parents=True)
    spec = out / "es_cartpole.mrl"
    spec.write_text((ROOT / "specs" / "es_cartpole.mrl").read_text() +
                    f"\nschedule {{\n    execution = {execution}\n}}\n")
    r = subprocess.run([sys.executable, "-m", "metadsl.cli", "run", str(spec), "--seed", str(seed),
                        "--iterations", str(generations), "--threads", "1", "--out", str(out / "run")],
                       cwd=ROOT, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(r.stderr[-3000:])
    out = out / "run"
    last = (out / "metrics.csv").read_text().strip().splitlines()[-1].split(",")
    steps, wall = int(last[2]), float(last[3])
    score = json.loads((out / "eval.json").read_text())["results"][0]["mean"]
    return generations / wall, steps / wall, score


def evotorch(seed: int, generations: int) -> tuple[float, float, float]:
    from evotorch.algorithms import PGPE
    from evotorch.neuroevolution import GymNE

    torch.manual_seed(seed)
    problem = GymNE("CartPole-v1", f"Linear(obs_length, {HIDDEN}) >> Tanh() >> "
                    "Linear({HIDDEN}, act_length)".replace("{HIDDEN}", str(HIDDEN)),
                    num_episodes=1, num_actors=1)
    problem.manual_seed(seed)
    searcher = PGPE(problem, popsize=POPULATION, center_learning_rate=LR,
                    stdev_learning_rate=0.0, stdev_init=SIGMA, optimizer="adam",
                    ranking_method="centered", symmetric=True)
    start = time.perf_counter()
    searcher.run(generations)
    wall = time.perf_counter() - start
    steps = searcher.status["total_interaction_count"]
    policy = problem.to_policy(searcher.status["center"])
    env, total = gym.make("CartPole-v1"), 0.0
    for episode in range(EPISODES):
        obs, _ = env.reset(seed=10_000 + episode)
        done = False
        while not done:
            with torch.no_grad():
                action = int(policy(torch.as_tensor(obs, dtype=torch.float32)).argmax())
            obs, reward, terminated, truncated, _ = env.step(action)
            total += reward
            done = terminated or truncated
    return generations / wall, steps / wall, total / EPISODES


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--generations", type=int, default=100)
    parser.add_argument("--execution", choices=["batched", "sequential"], default="batched",
                        help="our members as the rows of one call, or one after another")
    a = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in a.seeds:
            rows.append((seed, *ours(seed, a.generations, a.execution, Path(tmp) / f"s{seed}"),
                         *evotorch(seed, a.generations)))
    print(f"CartPole-v1, population {POPULATION}, σ {SIGMA}, lr {LR}, {a.generations} "
          f"generations, one thread, ours {a.execution}; final score on {EPISODES} "
          "episodes\n")
    print("| seed | ours gen/s | env-steps/s | score | EvoTorch gen/s | env-steps/s | score "
          "| gen/s ratio |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for seed, ur, usteps, us, tr, tsteps, ts in rows:
        print(f"| {seed} | {ur:.3f} | {usteps:,.0f} | {us:.1f} | {tr:.3f} | {tsteps:,.0f} | "
              f"{ts:.1f} | {ur / tr:.2f} |")
    ratios = [r[1] / r[4] for r in rows]
    print(f"\nratio mean {statistics.mean(ratios):.2f}" +
          (f" ± {statistics.stdev(ratios) / len(ratios) ** 0.5:.2f}" if len(rows) > 1 else ""))


if __name__ == "__main__":
    main()
