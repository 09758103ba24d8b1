"""Hostile input at scale: mutated specs through check, the mutants that check through
compile, and the modules that compile through one iteration of every outer loop.

    python bench/reliability_fuzz.py [--check 10000] [--run 1000] [--minutes 40] [--seed 0]
                                     [--shard I/N]

With --shard I/N a process compiles and runs every N-th checked mutant from the I-th
(0-based), so N processes on N cores share the mutants; add their counts.

The one iteration runs at reduced sizes (at most 8 tasks per meta-batch, 4 of anything a
loop collects): the code path a module builds is the same at any size, and the 1,000
modules then run in minutes rather than hours (a MuJoCo MAML iteration at the spec's
sizes takes 75 s).

Mutants are the specs in specs/ and tests/specs/ with one line deleted or repeated (half
of them, which often still check) or 1–4 random edits (lines deleted or duplicated,
tokens swapped or dropped, truncation, stray characters: tests/test_fuzz.py's `mutate`);
one in four also gets a hostile title and last comment whose text, were it
ever executed, would create a file named PWNED. Counted: internal errors (E0901) and
Python exceptions escaping `check`; modules that are not valid Python; mutants that
compile but die in their first iteration (build, then one iteration of each outer loop,
on one thread); payloads executed.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import multiprocessing
import os
import random
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from metadsl.diagnostics import CompileError, NotBuilt  # noqa: E402
from metadsl.driver import compile_module, front_end  # noqa: E402
from metadsl.runtime.runs.session import QuietRun  # noqa: E402
from tests.test_fuzz import SOURCES, mutate  # noqa: E402

KINDS = ("delete_line", "duplicate_line", "swap_tokens", "drop_token", "truncate", "insert_char")
PAYLOAD = '"""\\nimport os; open(\'PWNED\', \'w\')\\n"""'


def hostile(text: str) -> str:
    """The spec with a title and a last comment that would write PWNED if executed."""
    lines = text.split("\n")
    for i, line in enumerate(lines):
        if line.startswith("spec ") and '"' in line:
            name = line.split()[1]
            lines[i] = f'spec {name} "{PAYLOAD}"'
            break
    return "\n".join(lines).rstrip("\n") + "\n# \"\"\" import os; open('PWNED', 'w') \""


def mutant(rnd: random.Random) -> str:
    text = rnd.choice(SOURCES)
    if rnd.random() < 0.25:
        text = hostile(text)
    if rnd.random() < 0.5:  # one line deleted or repeated: mutants that often still check
        return mutate(text, rnd, rnd.choice(KINDS[:2]))
    for _ in range(rnd.randint(1, 4)):
        if text:
            text = mutate(text, rnd, rnd.choice(KINDS))
    return text


def one_iteration(source: str, workdir: Path) -> None:
    """Build the module's state and run one iteration of each outer loop."""
    path = workdir / "fuzz_train.py"
    path.write_text(source, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("fuzz_train", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    args = module.Args()
    caps = {"__iterations": 1, "__meta_batch": 8, "__count": 4}
    short = {f.name: min(getattr(args, f.name), cap) for f in dataclasses.fields(args)
             for suffix, cap in caps.items() if f.name.endswith(suffix)}
    args = dataclasses.replace(args, **short)
    state = module.build(args)
    for name in module.main.__code__.co_names:
        loop = getattr(module, name, None)
        if callable(loop) and getattr(loop, "__annotations__", {}).get("run") is not None \
                and name not in ("evaluate", "main"):
            loop(args, state, QuietRun(show=False))


def _child(source: str, workdir: Path, report) -> None:
    try:
        one_iteration(source, workdir)
        report.put(("first iterations ran", ""))
    except BaseException as e:  # noqa: BLE001 - SystemExit too: what the bench counts
        report.put(("died", f"run {type(e).__name__}: {e}\n" +
                    "".join(traceback.format_exc().splitlines(True)[-4:])))


def isolated(source: str, workdir: Path, timeout: float = 600) -> tuple[str, str]:
    """One module's first iteration in a forked process, so that a crash (a signal) or a
    hang is counted rather than ending the bench."""
    context = multiprocessing.get_context("fork")
    report = context.Queue()
    child = context.Process(target=_child, args=(source, workdir, report))
    child.start()
    child.join(timeout)
    if child.is_alive():
        child.kill()
        child.join()
        return "hung", f"run: no first iteration within {timeout:.0f} s"
    if child.exitcode < 0:
        return "crashed", f"run: killed by signal {-child.exitcode}"
    return report.get(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--check", type=int, default=10000)
    parser.add_argument("--run", type=int, default=1000)
    parser.add_argument("--minutes", type=float, default=40.0, help="stop running modules "
                        "after this long (checking is never cut short)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--shard", default="0/1", help="I/N: compile and run every N-th "
                        "checked mutant from the I-th, to share them among N processes")
    options = parser.parse_args()
    shard, shards = (int(x) for x in options.shard.split("/"))
    torch.set_num_threads(1)
    rnd = random.Random(options.seed)
    workdir = Path(tempfile.mkdtemp(prefix="metadsl-fuzz-"))
    os.chdir(workdir)  # a payload, if ever run, writes PWNED here
    checks, compiles, runs = Counter(), Counter(), Counter()
    failures: list[str] = []
    checked: list[str] = []
    start = time.time()
    for _ in range(options.check):
        text = mutant(rnd)
        data = text.encode("utf-8", "surrogatepass")
        try:
            front_end("fuzz.mrl", "check", data=data)
        except CompileError as e:
            codes = {d.code for d in e.diagnostics}
            checks["E0901" if "E0901" in codes else "located errors"] += 1
            if "E0901" in codes:
                failures.append(f"check E0901: {e.diagnostics[0].message}")
            continue
        except Exception as e:  # noqa: BLE001 - what the bench counts
            checks["python exception"] += 1
            failures.append(f"check {type(e).__name__}: {e}")
            continue
        checks["checked"] += 1
        checked.append(text)
    print(f"check: {options.check} mutants in {time.time() - start:.0f} s: {dict(checks)}",
          flush=True)
    start = time.time()
    modules = []
    mine = checked[shard::shards]
    for text in mine:
        try:
            source = compile_module("fuzz.mrl", text.encode("utf-8", "surrogatepass"))
        except NotBuilt:
            compiles["named as not built (exit 3)"] += 1
            continue
        except CompileError as e:
            key = "E0901" if any(d.code == "E0901" for d in e.diagnostics) else "located errors"
            compiles[key] += 1
            if key == "E0901":
                failures.append(f"compile E0901: {e.diagnostics[0].message}")
            continue
        try:
            compile(source, "fuzz_train.py", "exec")
        except SyntaxError as e:
            compiles["invalid module"] += 1
            failures.append(f"invalid module: {e}")
            continue
        compiles["valid module"] += 1
        modules.append(source)
    print(f"compile (shard {options.shard}): {len(mine)} checked mutants in {time.time() - start:.0f} s: "
          f"{dict(compiles)}", flush=True)
    start = time.time()
    chosen = list(enumerate(modules[: -(-options.run // shards)], 1))
    for n, source in chosen:
        if time.time() - start > options.minutes * 60:
            runs["not run (time budget)"] += 1
            continue
        outcome, detail = isolated(source, workdir)
        runs[outcome] += 1
        if detail:  # kept, to be reproduced: python FILE runs it
            kept = workdir / f"failed-{n}.py"
            kept.write_text(source, encoding="utf-8")
            failures.append(f"{detail}  (module kept: {kept})")
        if sum(runs.values()) % 50 == 0:
            print(f"  {sum(runs.values())} modules run: {dict(runs)}", flush=True)
    print(f"run (shard {options.shard}): {len(chosen)} modules in {time.time() - start:.0f} s: "
          f"{dict(runs)}")
    print(f"payloads executed: {int((workdir / 'PWNED').exists())}")
    for f in failures[:20]:
        print("  failure:", f)


if __name__ == "__main__":
    main()
