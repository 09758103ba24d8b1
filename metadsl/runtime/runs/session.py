"""What every generated training module shares: arguments, the run folder, logging,
checkpoints, and the end of a run.

A run folder holds the resolved arguments (args.json), package versions, metrics.csv,
checkpoint.pt (written atomically: a kill at any moment loses at most the iterations
since the last checkpoint) and eval.json.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import difflib
import json
import math
import os
import platform
import re
import sys
import time
from pathlib import Path

import torch

from . import run_folder
from .run_folder import UsageError
from ..errors import NonFiniteLoss, TaskError


class State:
    """Everything a run learns and samples with: the base of each generated module's
    typed `State` dataclass (its generator, task families, models, meta-parameters,
    optimizers). Checkpointable whole."""

    def replace(self, **parts) -> "State":
        """A state sharing every part but those given (an evaluation's own generator, a
        baseline's other tasks)."""
        return dataclasses.replace(self, **parts)

    def state_dict(self) -> dict:
        out = {}
        for name, part in self.__dict__.items():
            if hasattr(part, "state_dict"):  # modules, optimizers, meta-gradient traces
                out[name] = part.state_dict()
            elif isinstance(part, torch.Generator):
                out[name] = part.get_state()
        return out

    def load_state_dict(self, saved: dict) -> None:
        for name, value in saved.items():
            part = self.__dict__[name]
            if isinstance(part, torch.Generator):
                part.set_state(value)
            elif isinstance(part, torch.optim.Optimizer):
                # the moments continue; the hyperparameters are this run's (a `--set` of a
                # learning rate on resume takes effect, as args.json records it)
                given = [{k: v for k, v in g.items() if k != "params"} for g in part.param_groups]
                part.load_state_dict(value)
                for group, hyper in zip(part.param_groups, given):
                    group.update(hyper)
            else:
                part.load_state_dict(value)


def _allocation(error) -> str | None:
    """How much an allocation that ran out of memory asked for ("640.0 GB"), or None if
    `error` is something else."""
    if isinstance(error, MemoryError):
        return "memory"
    if isinstance(error, RuntimeError) and "can't allocate memory" in str(error):
        asked = re.search(r"allocate (\d+) bytes", str(error))
        return f"{int(asked.group(1)) / 1e9:,.1f} GB" if asked else "memory"
    return None


@dataclasses.dataclass(frozen=True)
class Bounds:
    """A setting's bounds, as the registry states them: [low, high], ends open or closed."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def admits(self, value: float) -> bool:
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return False
        return not (self.high is not None and (value > self.high or
                                               (self.high_open and value == self.high)))

    def __str__(self) -> str:
        low = "-inf" if self.low is None else f"{self.low:g}"
        high = "inf" if self.high is None else f"{self.high:g}"
        return (f"{'(' if self.low_open or self.low is None else '['}{low}, {high}"
                f"{')' if self.high_open or self.high is None else ']'}")


@dataclasses.dataclass(frozen=True)
class Setting:
    """What `--set PATH=VALUE` sets: the Args field behind a dotted path, and the bounds the
    spec's checker holds it to."""

    field: str
    bounds: Bounds | None = None
    follows: str | None = None  # the path whose override this setting's default follows


def _convert(text: str, type_name: str, path: str):
    try:
        if type_name == "bool":
            if text.lower() in ("true", "1", "yes"):
                return True
            if text.lower() in ("false", "0", "no"):
                return False
            raise ValueError
        value = {"int": int, "float": float, "str": str}[type_name](text)
    except ValueError:
        raise UsageError(f"error[E0501]: --set {path}={text}: expected a {type_name}") from None
    if type_name == "float" and not (math.isfinite(value) and abs(value) <= 1e30):
        raise UsageError(f"error[E0207]: --set {path}={text}: a setting is a finite number "
                         "of at most 1e30 in magnitude (training runs in float32)")
    if type_name == "int" and abs(value) >= 2 ** 63:
        raise UsageError(f"error[E0207]: --set {path}={text}: out of range for an integer")
    return value


def _is_a(value, type_name: str) -> bool:
    """Whether a stored args.json value has its field's type (JSON keeps 1.0 as 1.0)."""
    if type_name == "bool":
        return isinstance(value, bool)
    if type_name == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if type_name == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool) and \
            math.isfinite(value)
    if type_name == "str":
        return isinstance(value, str)
    return True  # lists and dicts stay literals in the module


def parse(args_cls, settings: dict[str, Setting], argv=None, iterations: str | None = None):
    """`[--seed N] [--iterations N] [--set PATH=VALUE ...] [--out DIR] [--resume DIR]`;
    `settings` maps each dotted path to its Args field (the generated SETTINGS)."""
    parser = argparse.ArgumentParser(description=(args_cls.__doc__ or "").strip())
    parser.add_argument("--seed", type=int)
    parser.add_argument("--iterations", type=int, help=f"sets {iterations}")
    parser.add_argument("--threads", type=int, help="sets schedule.threads: torch threads "
                        "(0: one per core)")
    parser.add_argument("--set", action="append", default=[], metavar="PATH=VALUE")
    parser.add_argument("--out", type=Path, help="run folder (default runs/SPEC-TIME)")
    parser.add_argument("--resume", type=Path, help="continue the run in this folder")
    parser.add_argument("--force", action="store_true",
                        help="with --out: start over in a folder that holds files (only the "
                             "run's own files are replaced)")
    options = parser.parse_args(argv)
    types = {f.name: f.type for f in dataclasses.fields(args_cls)}
    values = {}
    if options.resume is not None and (options.out is not None or options.force):
        raise UsageError("error[E0501]: --resume continues a run in its own folder: give it "
                         "without --out and --force")
    if options.resume is not None:
        saved = options.resume / "args.json"
        if not saved.is_file():
            raise UsageError(f"error[E0601]: {options.resume} is not a run folder (no args.json)"
                             f"\n  = help: a run stopped before it began leaves none: --out "
                             f"{options.resume} starts it")
        try:
            stored = json.loads(saved.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise UsageError(f"error[E0602]: {saved} cannot be read: {e}") from None
        if not isinstance(stored, dict):
            raise UsageError(f"error[E0602]: {saved} is not a run's args.json")
        gone = sorted(set(stored) - set(types))
        if gone:  # the spec changed since the run began
            print(f"note: {options.resume} has settings this module lacks, ignored: "
                  f"{', '.join(gone)}", file=sys.stderr)
        for name, value in stored.items():
            if name in types and not _is_a(value, types[name]):
                raise UsageError(f"error[E0602]: {saved}: '{name}' is {value!r}, not a "
                                 f"{types[name]}")
        values.update({k: v for k, v in stored.items() if k in types})
    overrides = [("seed", str(options.seed))] if options.seed is not None else []
    if options.iterations is not None:
        overrides.append((iterations, str(options.iterations)))
    if options.threads is not None:
        overrides.append(("schedule.threads", str(options.threads)))
    for item in options.set:
        if "=" not in item:
            raise UsageError(f"error[E0501]: --set {item}: expected PATH=VALUE")
        path, text = item.split("=", 1)
        overrides.append((path.strip(), text.strip()))
    spelled = {path.replace("'", "_prime"): path for path in settings}  # tau_prime for tau'
    named = {spelled.get(path, path) for path, _ in overrides}
    # a default that follows another setting moves with it (`--iterations 3` also gives
    # the pretrained baseline 3), unless it is set itself or resumed from args.json
    overrides += [(path, text) for leader, text in list(overrides)
                  for path, s in settings.items()
                  if s.follows == spelled.get(leader, leader) and path not in named
                  and settings[path].field not in values]
    for path, text in overrides:
        path = spelled.get(path, path)
        if path not in settings:
            close = difflib.get_close_matches(path, list(settings), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise UsageError(f"error[E0501]: no setting '{path}' in this spec{hint}\n"
                             f"  settings: {', '.join(sorted(settings))}")
        setting = settings[path]
        values[setting.field] = _convert(text, types[setting.field], path)
        if setting.bounds is not None and not setting.bounds.admits(values[setting.field]):
            raise UsageError(f"error[E0207]: --set {path}={text}: out of bounds "
                             f"{setting.bounds}")
    return args_cls(**values), options


class Run:
    """The run folder, metrics and checkpoints of one training run (a context manager)."""

    def __init__(self, spec: str, digest: str, args, options, source: str | None = None,
                 spec_source: str | None = None, checkpoint_every: int = 25,
                 log_every: int = 0, threads: int = 0):
        self.spec, self.digest, self.args, self.options = spec, digest, args, options
        if threads > 0:
            torch.set_num_threads(threads)
        self.folder = run_folder.choose(spec, digest, options.out, options.resume,
                                        getattr(options, "force", False))
        self._lock = run_folder.Lock(self.folder)
        self._source, self._spec_source = source, spec_source
        self.checkpoint_every = checkpoint_every
        self.log_every = log_every  # iterations between progress lines; 0: ten per phase
        self.completed: dict[str, int] = {}  # iterations done, per outer loop (phase)
        self.loop, self.iteration, self.total = "", 0, 1
        self.progress = 0.0
        self.env_steps = 0
        self._state = None
        self._tensorboard = None
        self._file = None
        self._writer = None
        self._t0 = time.time()
        self._checkpointed_at, self._checkpoint_cost, self._since_checkpoint = \
            time.perf_counter(), 0.0, 0

    def _write_run_files(self) -> None:
        """The module that trains (the run can be re-run), the spec and args as this run
        resolved them, and the versions it ran with."""
        files = {"args.json": json.dumps(dataclasses.asdict(self.args), indent=2),
                 "versions.json": json.dumps({
                     "spec": self.spec, "spec_sha256": self.digest,
                     "python": platform.python_version(), "torch": torch.__version__,
                     "metadsl": _version()}, indent=2)}
        if self._source is not None:
            files["train.py"] = Path(self._source).read_text(encoding="utf-8")
        if self._spec_source is not None:
            files["spec.mrl"] = self._spec_source
        try:
            for name, text in files.items():
                (self.folder / name).write_text(text, encoding="utf-8")
        except OSError as e:
            run_folder.refuse("E0603", f"cannot write in the run folder {self.folder}: "
                                       f"{e.strerror or e}", status=4)

    def __enter__(self):
        return self

    def __exit__(self, kind, error, tb):
        if self._file is not None:
            self._file.close()
        if self._tensorboard is not None:
            self._tensorboard.close()
        self._lock.release()
        if isinstance(error, NonFiniteLoss):
            saved = self.folder / run_folder.CHECKPOINT
            where = f"the last good checkpoint is {saved}" if saved.is_file() else \
                "no checkpoint was written before it"
            phase = f" of {self.loop}" if self.loop else ""
            sys.stderr.write(f"\nstopped: {error} at iteration {self.iteration}{phase}; "
                             f"{where}\n")
            raise SystemExit(1)
        if isinstance(error, TaskError):
            sys.stderr.write(f"error: {error}\n")
            raise SystemExit(1)
        wanted = _allocation(error)
        if wanted is not None:
            phase = f" of {self.loop}" if self.loop else ""
            run_folder.refuse("E0604", f"the run needs more memory than this machine has: "
                                       f"allocating {wanted} failed at iteration "
                                       f"{self.iteration}{phase}",
                              hint="lower the sizes that multiply: meta_batch, collect "
                                   "counts, hidden units, evaluate.instances", status=4)
        return False

    # -- checkpoints --
    def restore(self, state: State) -> None:
        """Start the run: on `--resume`, load the checkpoint into `state` (proven whole,
        this spec's, and fitting its models) before anything in the folder changes; then
        write the run's files."""
        self._state = state
        resuming = self.options.resume is not None
        if resuming and (self.folder / run_folder.CHECKPOINT).is_file():
            saved = run_folder.load(self.folder, self.spec, self.digest)
            try:
                state.load_state_dict(saved["state"])
                self.completed = {str(k): int(v) for k, v in saved["completed"].items()}
                self.env_steps = int(saved["env_steps"])
                wall = float(saved["wall_s"])
            except (RuntimeError, KeyError, ValueError, TypeError, AttributeError) as e:
                run_folder.refuse("E0602", f"{self.folder / run_folder.CHECKPOINT} does not "
                                           f"fit this spec's state: {str(e).splitlines()[0]}",
                                  status=4)
            self._t0 = time.time() - wall  # wall-clock time continues too
            self._keep_metrics_up_to_the_checkpoint()
            where = ", ".join(f"{loop} iteration {n}" for loop, n in self.completed.items())
            print(f"resumed {self.folder} at {where}", file=sys.stderr)
        elif resuming:
            print(f"note: {self.folder} has no checkpoint: the run starts from its first "
                  "iteration, and the metrics logged without one are dropped", file=sys.stderr)
            run_folder.clear(self.folder)
        else:
            run_folder.clear(self.folder)  # an empty folder, or --force
        self._write_run_files()

    # A checkpoint may cost at most this share of the time between two: iterations slower
    # than 10 checkpoints are all checkpointed (a kill loses at most the one under way).
    CHECKPOINT_SHARE = 0.1

    def _checkpoint_due(self, last: bool) -> bool:
        self._since_checkpoint += 1
        waited = time.perf_counter() - self._checkpointed_at
        return last or self._since_checkpoint >= self.checkpoint_every or \
            self._checkpoint_cost <= self.CHECKPOINT_SHARE * waited

    def checkpoint(self) -> None:
        start = time.perf_counter()
        run_folder.save(self.folder, self.spec, self.digest, {
            "completed": self.completed, "env_steps": self.env_steps,
            "wall_s": time.time() - self._t0, "state": self._state.state_dict()})
        self._checkpointed_at = time.perf_counter()
        self._checkpoint_cost = self._checkpointed_at - start
        self._since_checkpoint = 0

    def _keep_metrics_up_to_the_checkpoint(self) -> None:
        """Rows logged after the checkpoint are run again on resume: drop them, so no
        iteration appears twice."""
        path = self.folder / "metrics.csv"
        if not path.is_file():
            return
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            fields, rows = reader.fieldnames or [], list(reader)
        kept = [r for r in rows if int(r["iteration"]) < self.completed.get(r.get("loop", ""), 0)]
        self._rewrite_metrics(fields, kept)

    def _rewrite_metrics(self, fields: list[str], rows: list[dict]) -> None:
        tmp = self.folder / "metrics.csv.tmp"
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)
        os.replace(tmp, self.folder / "metrics.csv")

    # -- the loop --
    def iterations(self, loop: str, total: int):
        """An outer loop's iterations: a phase of the run with its own counter, checkpointed
        progress and `progress` fraction; a resumed run continues each where it stopped."""
        self.loop, self.total = loop, total
        start = self.completed.get(loop, 0)
        show = sys.stderr.isatty()
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        columns = [TextColumn(f"{loop}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                   TextColumn("{task.fields[rate]:>8} steps/s"),
                   TextColumn("return {task.fields[ret]}"), TimeRemainingColumn()]
        with Progress(*columns, disable=not show, transient=False) as bar:
            self._bar = bar
            self._task = bar.add_task(loop, total=total, completed=start, rate="-", ret="-")
            for iteration in range(start, total):
                self.iteration = iteration
                self.progress = iteration / max(1, total)
                yield iteration
                self.completed[loop] = iteration + 1
                if self._checkpoint_due(iteration + 1 == total):
                    self.checkpoint()

    def log(self, iteration: int, metrics: dict, env_steps: int = 0, state=None) -> None:
        self.env_steps += env_steps
        wall = time.time() - self._t0
        rate = self.env_steps / max(wall, 1e-9)
        metrics = {**metrics, "charts/steps_per_second": rate}
        row = {"loop": self.loop, "iteration": iteration, "env_steps": self.env_steps,
               "wall_s": round(wall, 3), **{k: float(v) for k, v in metrics.items()}}
        self._write_row(row)
        if self._tensorboard is None:
            from torch.utils.tensorboard import SummaryWriter

            self._tensorboard = SummaryWriter(str(self.folder / "tensorboard"))
        for key, value in metrics.items():
            self._tensorboard.add_scalar(key, float(value), global_step=self.env_steps)
        ret = metrics.get("charts/return")
        self._bar.update(self._task, completed=iteration + 1, rate=f"{rate:,.0f}",
                         ret=f"{ret:.3f}" if ret is not None else "-")
        every = self.log_every or max(1, self.total // 10)
        if not sys.stderr.isatty() and (iteration + 1) % every == 0:
            shown = f"  return {ret:.3f}" if ret is not None else ""
            print(f"{self.spec} {self.loop} iteration {iteration + 1}/{self.total}  "
                  f"env-steps/s {rate:,.0f}{shown}", file=sys.stderr)

    def _write_row(self, row: dict) -> None:
        """Append to metrics.csv; a phase that logs other metrics widens the header (the
        earlier rows are rewritten with empty cells for them)."""
        path = self.folder / "metrics.csv"
        if self._writer is not None and set(row) - set(self._writer.fieldnames):
            self._file.close()
            self._writer = None
        if self._writer is None:
            fields, rows = list(row), []
            if path.is_file():
                with open(path, newline="") as f:
                    reader = csv.DictReader(f)
                    rows = list(reader)
                    old = reader.fieldnames or []
                fields = old + [k for k in row if k not in old]
                if fields != old:
                    self._rewrite_metrics(fields, rows)
            else:
                self._rewrite_metrics(fields, [])
            self._file = open(path, "a", newline="")
            self._writer = csv.DictWriter(self._file, fieldnames=fields)
        self._writer.writerow(row)
        self._file.flush()

    # -- evaluation --
    def write_eval(self, results: list[dict]) -> None:
        from rich.console import Console
        from rich.table import Table

        data = {"spec": self.spec, "seed": self.args.seed,
                "tasks": sorted({r["tasks"] for r in results}), "results": results}
        (self.folder / "eval.json").write_text(json.dumps(data, indent=2))
        table = Table(title=f"{self.spec}: held-out evaluation")
        steps = any("adapt_steps" in r for r in results)  # evaluations after k inner steps
        columns = ["tasks", "method", "metric"] + (["adapt steps"] if steps else []) + \
            ["mean", "stderr", "episodes", "paired diff to learner"]
        for column in columns:
            table.add_column(column, justify="right" if column in ("mean", "stderr") else "left")
        for r in results:
            diff = r.get("diff_to_learner")
            table.add_row(r["tasks"], r["method"], r["metric"],
                          *([str(r["adapt_steps"])] if steps else []), f"{r['mean']:.3f}",
                          f"{r['stderr']:.3f}", str(r["episodes"]),
                          f"{diff['mean']:+.3f} ± {diff['stderr']:.3f}" if diff else "")
        Console(width=max(120, Console().width)).print(table)
        print(f"run folder: {self.folder}")


class QuietRun:
    """What an outer loop needs of a run, without a run folder: a baseline's training
    inside the evaluation (its progress on stderr), or a timed bench."""

    def __init__(self, label: str = "", show: bool = True):
        self.label, self.show = label, show
        self.progress = 0.0

    def iterations(self, loop: str, total: int):
        for iteration in range(total):
            self.progress = iteration / max(1, total)
            yield iteration
            if self.show and (iteration + 1) % max(1, total // 10) == 0:
                print(f"{self.label}: {loop} iteration {iteration + 1}/{total}",
                      file=sys.stderr)

    def log(self, *args, **kwargs) -> None:
        pass


def _version() -> str:
    from metadsl import __version__

    return __version__
