"""Front-end speed: in-process parse+check per spec, and cold `metadsl check` wall time.

    python bench/frontend.py            # prints a Markdown table (the README's figures)

Targets (issue 2): parse+check < 20 ms for the largest spec; cold CLI check < 0.4 s.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from metadsl.front.check import check_module  # noqa: E402
from metadsl.front.stdlib import STANDARD  # noqa: E402
from metadsl.front.parser import parse  # noqa: E402
from metadsl.middle import build, passes  # noqa: E402


def best_of(fn, repeat: int) -> float:
    """Median seconds of `repeat` calls, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    rows = []
    for spec in sorted((ROOT / "specs").glob("*.mrl")):
        source = spec.read_text(encoding="utf-8")
        front = best_of(lambda: check_module(parse(source, str(spec)), source, str(spec), STANDARD), 30)
        checked = check_module(parse(source), source, "<input>", STANDARD)
        ir = best_of(lambda: passes.run_all(build.build(checked)), 30)
        rows.append((spec.stem, len(source.splitlines()), front * 1e3, ir * 1e3))
    print("| spec | lines | parse+check (ms) | loop program + passes (ms) |")
    print("|---|---:|---:|---:|")
    for name, lines, front, ir in sorted(rows, key=lambda r: -r[1]):
        print(f"| {name} | {lines} | {front:.1f} | {ir:.1f} |")
    largest = max(rows, key=lambda r: r[1])
    print(f"\nlargest spec ({largest[0]}): parse+check {largest[2]:.1f} ms (target < 20 ms); "
          f"slowest: {max(r[2] for r in rows):.1f} ms")

    exe = shutil.which("metadsl") or str(Path(sys.executable).parent / "metadsl")
    for command in (["check", "specs/rl2_bandits.mrl"], ["check", "specs/unsupervised_meta_rl.mrl"],
                    ["graph", "specs/maml_nav2d.mrl"]):
        runs = []
        for _ in range(7):
            t = time.perf_counter()
            subprocess.run([exe, *command], cwd=ROOT, capture_output=True, check=True)
            runs.append(time.perf_counter() - t)
        print(f"cold `metadsl {' '.join(command)}`: median {statistics.median(runs):.3f} s "
              f"(min {min(runs):.3f} s) over 7 runs" +
              (" (target < 0.4 s)" if command[0] == "check" else ""))


if __name__ == "__main__":
    main()
