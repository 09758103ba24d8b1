"""Every built family's default run over seeds: one command for the README's result tables.

    python bench/reproduce.py --family maml_nav2d --seeds 1 2 3     # one family, 3 seeds
    python bench/reproduce.py --seeds 1 2 3 --jobs 2                 # every built family
    python bench/reproduce.py --quick                                # seconds: a smoke run

Each (family, seed) is `metadsl run specs/FAMILY.mrl --seed S --threads 1` in a process of
its own, in `--out`/FAMILY/seed_S (kept: a run already finished is read, not redone). Each
eval.json row (tasks, method, metric, inner steps) becomes one table row: the mean over seeds ±
its standard error (n − 1 in the variance; none for one seed), every seed's value, and the
paired difference to the learner — per seed, the row's own paired difference on that
seed's held-out tasks, then mean ± standard error of those over seeds. Tables go to
`--out`/results.md and results.json. `--quick` runs 2 outer iterations on few held-out
tasks: what it prints checks the machinery, not the families.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# The built families: the spec of each, by name (specs/NAME.mrl).
FAMILIES = ("rl2_bandits", "rl2_tabular_mdp", "rl2_cartpole", "wang2016_dependent_bandits",
            "wang2016_informative_arm", "hochreiter2001", "maml_sine", "metasgd_sine",
            "reptile_sine", "maml_nav2d", "fomaml_nav2d", "reptile_nav2d", "maml_cheetah_vel",
            "maml_cheetah_dir", "metagrad", "domain_randomization", "mfec", "nec",
            "dqn_cartpole", "episodic_lstm", "es_cartpole")
QUICK = ["--iterations", "2", "--set", "evaluate.instances=8"]


def run_one(family: str, seed: int, out: Path, quick: bool) -> dict:
    """The eval.json of one seed's run (run now unless a finished one is there)."""
    folder = out / family / f"seed_{seed}"
    result = folder / "eval.json"
    if result.is_file():
        return json.loads(result.read_text())
    folder.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "metadsl.cli", "run", str(ROOT / "specs" / f"{family}.mrl"),
               "--seed", str(seed), "--threads", "1", "--out", str(folder), "--force"]
    command += QUICK if quick else []
    started = time.time()
    with open(out / family / f"seed_{seed}.log", "w") as log:
        code = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                              env={**os.environ, "PYTHONUNBUFFERED": "1"}).returncode
    if code != 0 or not result.is_file():
        raise SystemExit(f"{family} seed {seed}: exit {code}; see {out / family}/seed_{seed}.log")
    data = json.loads(result.read_text())
    data["minutes"] = (time.time() - started) / 60
    result.write_text(json.dumps(data, indent=1))
    return data


def mean_stderr(values: list[float]) -> tuple[float, float | None]:
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, None
    var = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
    return mean, math.sqrt(var / len(values))


def _row_key(row: dict) -> tuple:
    return (row["tasks"], row["method"], row["metric"], row.get("adapt_steps"))


def summarise(family: str, runs: dict[int, dict]) -> list[dict]:
    """One row per (tasks, method, metric, inner steps) over the seeds (rows every seed
    has)."""
    per_seed = {seed: {_row_key(r): r for r in data["results"]} for seed, data in runs.items()}
    keys = [k for k in per_seed[min(per_seed)] if all(k in rows for rows in per_seed.values())]
    table = []
    for key in keys:
        values = {seed: rows[key]["mean"] for seed, rows in per_seed.items()}
        mean, stderr = mean_stderr(list(values.values()))
        row = {"family": family, "tasks": key[0], "method": key[1], "metric": key[2],
               "adapt_steps": key[3],
               "mean": mean, "stderr": stderr, "seeds": values}
        diffs = {seed: rows[key]["diff_to_learner"]["mean"] for seed, rows in per_seed.items()
                 if "diff_to_learner" in rows[key]}
        if len(diffs) == len(values):
            d_mean, d_err = mean_stderr(list(diffs.values()))
            row["diff_to_learner"] = {"mean": d_mean, "stderr": d_err, "seeds": diffs}
        table.append(row)
    return table


def _pm(mean: float, stderr: float | None) -> str:
    return f"{mean:.4g}" if stderr is None else f"{mean:.4g} ± {stderr:.2g}"


def markdown(tables: dict[str, list[dict]], seeds: list[int], minutes: dict) -> str:
    out = [f"Seeds {', '.join(map(str, seeds))}; mean ± standard error over seeds; "
           "paired differences are per seed on that seed's held-out tasks, then over seeds.", ""]
    for family, rows in tables.items():
        out += [f"### {family} (`python bench/reproduce.py --family {family} --seeds "
                f"{' '.join(map(str, seeds))}`; {minutes.get(family, 0):.1f} min per seed)", "",
                "| tasks | method | metric | inner steps | mean ± s.e. | per seed | "
                "paired diff to learner |",
                "|---|---|---|---:|---:|---|---:|"]
        for r in rows:
            steps = "" if r["adapt_steps"] is None else str(r["adapt_steps"])
            each = " / ".join(f"{r['seeds'][s]:.4g}" for s in seeds if s in r["seeds"])
            diff = _pm(r["diff_to_learner"]["mean"], r["diff_to_learner"]["stderr"]) \
                if "diff_to_learner" in r else ""
            out.append(f"| {r['tasks']} | {r['method']} | {r['metric']} | {steps} | "
                       f"{_pm(r['mean'], r['stderr'])} | {each} | {diff} |")
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--family", action="append", choices=FAMILIES,
                        help="a family to run (repeat it; default: every built family)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--quick", action="store_true",
                        help="2 outer iterations, 8 held-out tasks: checks the machinery")
    parser.add_argument("--jobs", type=int, default=1, help="runs at once (one thread each)")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder of the runs and tables (default runs/reproduce, "
                             "runs/reproduce_quick with --quick)")
    args = parser.parse_args(argv)
    families = args.family or list(FAMILIES)
    out = args.out or ROOT / "runs" / ("reproduce_quick" if args.quick else "reproduce")
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(f, s) for f in families for s in args.seeds]
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        done = list(pool.map(lambda job: run_one(*job, out, args.quick), jobs))
    results = dict(zip(jobs, done))
    tables = {f: summarise(f, {s: results[f, s] for s in args.seeds}) for f in families}
    minutes = {f: sum(results[f, s].get("minutes", 0) for s in args.seeds) / len(args.seeds)
               for f in families}
    (out / "results.json").write_text(json.dumps(
        {"seeds": args.seeds, "quick": args.quick, "tables": tables, "minutes": minutes},
        indent=1))
    text = markdown(tables, args.seeds, minutes)
    (out / "results.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
