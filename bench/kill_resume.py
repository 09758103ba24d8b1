"""Kill -9 a run at random moments and resume it each time: what is lost, and whether the
resumed run ends where an uninterrupted one does.

    python bench/kill_resume.py [--kills 20] [--spec tests/specs/two_phases.mrl] [--seed 0]

One run folder is started, killed with SIGKILL after a random delay (training,
checkpointing or evaluation alike), resumed, killed again, and so on `--kills` times, then
resumed to the end. Reported: per kill, the iterations logged before it and the iteration
the resume continued from (what was lost); at the end, whether metrics.csv holds every
iteration of every phase exactly once, and whether its returns and eval.json equal those
of the same seed run without interruption (one torch thread, so both are exact).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from metadsl.runtime.runs import run_folder

ROOT = Path(__file__).resolve().parent.parent
ENV = dict(os.environ, OMP_NUM_THREADS="1")


def command(spec: str, seed: int, folder: Path, resume: bool) -> list[str]:
    where = ["--resume", str(folder)] if resume else ["--seed", str(seed), "--out", str(folder)]
    return [sys.executable, "-m", "metadsl.cli", "run", spec, *where]


def rows(folder: Path) -> list[dict]:
    path = folder / "metrics.csv"
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def checkpointed(folder: Path) -> dict:
    """Iterations done per phase, as the folder's checkpoint holds them."""
    if not (folder / run_folder.CHECKPOINT).is_file():
        return {}
    held = json.loads((folder / "versions.json").read_text())
    return run_folder.load(folder, held["spec"], held["spec_sha256"])["completed"]


def results(folder: Path) -> list:
    data = json.loads((folder / "eval.json").read_text())
    return [(r["method"], r["mean"]) for r in data["results"]]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--spec", default="tests/specs/two_phases.mrl")
    parser.add_argument("--seed", type=int, default=0)
    options = parser.parse_args()
    rnd = random.Random(options.seed)
    work = Path(tempfile.mkdtemp(prefix="metadsl-kill-"))

    start = time.time()
    reference = work / "uninterrupted"
    subprocess.run(command(options.spec, options.seed, reference, False), cwd=ROOT, env=ENV,
                   check=True, capture_output=True)
    duration = time.time() - start
    print(f"uninterrupted run: {duration:.1f} s, {len(rows(reference))} metrics rows")

    losses, verdicts, runs_used = [], [], 0
    folder, resumed, kills = None, False, 0
    while kills < options.kills:
        if folder is None:
            runs_used += 1
            folder, resumed = work / f"killed-{runs_used}", False
        proc = subprocess.Popen(command(options.spec, options.seed, folder, resumed), cwd=ROOT,
                                env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rnd.uniform(0.5, 0.7 * duration))
        if proc.poll() is not None:  # it ended first: check it, go on with a fresh run
            verdicts.append(verdict(folder, reference))
            folder = None
            continue
        logged = len(rows(folder))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        resumed = (folder / "versions.json").is_file()  # killed before it began: start over
        completed = checkpointed(folder)
        kept = sum(completed.values())  # the iterations a resume continues after
        losses.append(logged - kept)
        print(f"kill {kills} (run {runs_used}): {logged} iterations logged, the checkpoint "
              f"holds {kept} ({completed or 'none yet'}); lost {logged - kept}")
    if folder is not None:
        final = subprocess.run(command(options.spec, options.seed, folder, resumed), cwd=ROOT,
                               env=ENV, capture_output=True, text=True)
        assert final.returncode == 0, final.stderr[-2000:]
        verdicts.append(verdict(folder, reference))
    print(f"\n{options.kills} kills over {runs_used} runs; most iterations lost to one kill: "
          f"{max(losses, default=0)}, mean {sum(losses) / max(1, len(losses)):.2f}")
    for i, v in enumerate(verdicts, 1):
        print(f"run {i}: " + ", ".join(f"{k} {x}" for k, x in v.items()))


def verdict(folder: Path, reference: Path) -> dict:
    """How a finished run compares with the uninterrupted one."""
    got, want = rows(folder), rows(reference)
    keys = [(r["loop"], r["iteration"]) for r in got]
    return {"duplicate rows": len(keys) - len(set(keys)),
            "same iterations": keys == [(r["loop"], r["iteration"]) for r in want],
            "same returns": [r.get("charts/return") for r in got] ==
            [r.get("charts/return") for r in want],
            "same eval.json": results(folder) == results(reference)}

if __name__ == "__main__":
    main()
