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
import errno
import json
import math
import platform
import re
import signal
import sys
import time
from pathlib import Path

import torch

from . import run_folder
from .run_folder import UsageError
from ..errors import NonFiniteLoss, SettingError, Stopped, TaskError


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
        missing = sorted(name for name, part in self.__dict__.items()
                         if (hasattr(part, "state_dict") or isinstance(part, torch.Generator))
                         and name not in saved)
        if missing:  # a part left as initialised would train on from nothing, silently
            raise ValueError(f"the checkpoint has no {', '.join(missing)}")
        extra = sorted(set(saved) - set(self.__dict__))
        if extra:
            raise ValueError(f"the checkpoint holds parts this run lacks: {', '.join(extra)}")
        for name, value in saved.items():
            part = self.__dict__[name]
            if isinstance(part, torch.Generator):
                part.set_state(value)
            elif isinstance(part, torch.optim.Optimizer):
                # the moments continue; the hyperparameters are this run's (a `--set` of a
                # learning rate on resume takes effect, as args.json records it)
                given = [{k: v for k, v in g.items() if k != "params"} for g in part.param_groups]
                _moments_fit(name, part, value)
                part.load_state_dict(value)
                for group, hyper in zip(part.param_groups, given):
                    group.update(hyper)
            else:
                part.load_state_dict(value)


def _moments_fit(name: str, optimizer: torch.optim.Optimizer, saved: dict) -> None:
    """Raise unless each saved moment has its parameter's shape: torch's optimizers load
    moments of another shape without a word, and their fused step then reads past them."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    indices = [i for group in saved.get("param_groups", []) for i in group.get("params", [])]
    if len(indices) != len(params):
        raise ValueError(f"{name} holds {len(params)} parameters, the checkpoint's "
                         f"{len(indices)}")
    for index, param in zip(indices, params):
        for key, moment in saved.get("state", {}).get(index, {}).items():
            if isinstance(moment, torch.Tensor) and moment.dim() > 0 and \
                    moment.shape != param.shape:
                raise ValueError(f"{name}'s {key} of parameter {index} has shape "
                                 f"{list(moment.shape)} in the checkpoint, "
                                 f"{list(param.shape)} in this run")


def _needed_bytes(state: "State") -> int:
    """A lower bound of the memory training `state` takes: each parameter with its
    gradient and, where an optimizer steps it, two moments and the step's two temporaries
    of its size (Adam's); each buffer once. (NEC at 10⁶ keys per action: 3.1 GB by this
    bound, 5.5 GB resident.)"""
    params, buffers, stepped = {}, {}, set()
    for part in state.__dict__.values():
        if isinstance(part, torch.nn.Module):
            params.update({id(p): p.numel() * p.element_size() for p in part.parameters()})
            buffers.update({id(b): b.numel() * b.element_size() for b in part.buffers()})
        elif isinstance(part, torch.optim.Optimizer):
            stepped |= {id(p) for group in part.param_groups for p in group["params"]}
    return sum(size * (6 if key in stepped else 2) for key, size in params.items()) + \
        sum(buffers.values())


def _available_bytes() -> int | None:
    """Memory this process may still take: MemAvailable, or the cgroup's limit if lower."""
    found = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) * 1024)
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit.isdigit():
            found.append(int(limit))
    except (OSError, ValueError):
        pass
    return min(found) if found else None


def _stop(signum, frame) -> None:
    name = signal.Signals(signum).name
    raise Stopped(name, 128 + signum)


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


def settings_help(args_cls, settings: dict[str, Setting]) -> str:
    """Every `--set` path with its default, bounds and what it sets (the Args field's
    docstring), one per line: what `--help` and `metadsl settings SPEC` print."""
    import ast
    import inspect

    docs = {}
    try:
        body = ast.parse(inspect.getsource(args_cls)).body[0].body
    except (OSError, TypeError, SyntaxError, IndexError, AttributeError):
        body = []
    for field, doc in zip(body, body[1:]):
        if isinstance(field, ast.AnnAssign) and isinstance(field.target, ast.Name) and \
                isinstance(doc, ast.Expr) and isinstance(doc.value, ast.Constant):
            docs[field.target.id] = str(doc.value.value).split(": ", 1)[-1]
    defaults = {f.name: f.default for f in dataclasses.fields(args_cls)}
    lines = ["settings (--set PATH=VALUE):"]
    for path, setting in sorted(settings.items()):
        bounds = f" in {setting.bounds}" if setting.bounds is not None else ""
        value = defaults.get(setting.field)
        shown = "" if value is dataclasses.MISSING else f" = {value!r}"
        lines.append(f"  {path}{shown}{bounds}")
        if docs.get(setting.field):
            lines.append(f"      {docs[setting.field]}")
    return "\n".join(lines)


def parse(args_cls, settings: dict[str, Setting], argv=None, iterations: str | None = None):
    """`[--seed N] [--iterations N] [--set PATH=VALUE ...] [--out DIR] [--resume DIR]`;
    `settings` maps each dotted path to its Args field (the generated SETTINGS)."""
    parser = argparse.ArgumentParser(description=(args_cls.__doc__ or "").strip(),
                                     epilog=settings_help(args_cls, settings),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
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
    values, stored = {}, {}
    options.changed = []  # settings a resume changes from the run's args.json
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
    named = [spelled.get(path, path) for path, _ in overrides]
    twice = sorted({path for path in named if named.count(path) > 1})
    if twice:  # which one was meant is not ours to guess
        raise UsageError(f"error[E0501]: {', '.join(twice)} is set twice (by --set, or "
                         "--set and the option that sets it): give each setting once")
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
        before = values.get(setting.field)
        values[setting.field] = _convert(text, types[setting.field], path)
        if options.resume is not None and setting.field in stored and \
                values[setting.field] != before:
            options.changed.append(f"{path} {before!r} → {values[setting.field]!r}")
        if setting.bounds is not None and not setting.bounds.admits(values[setting.field]):
            raise UsageError(f"error[E0207]: --set {path}={text}: out of bounds "
                             f"{setting.bounds}")
    return args_cls(**values), options


class Run:
    """The run folder, metrics and checkpoints of one training run (a context manager)."""

    def __init__(self, spec: str, digest: str, args, options, source: str | None = None,
                 spec_source: str | None = None, checkpoint_every: int = 25,
                 log_every: int = 0, threads: int = 0, workers: int = 1, address: str = ""):
        self.spec, self.digest, self.args, self.options = spec, digest, args, options
        self.workers, self.address = workers, address  # a Ray execution's (backend = ray)
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
        self._handlers = {}
        for sig in (signal.SIGTERM, signal.SIGHUP):
            try:
                self._handlers[sig] = signal.signal(sig, _stop)
            except ValueError:  # not the main thread: the caller handles signals
                pass

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
                run_folder.write_atomic(self.folder / name, text)
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
        for sig, handler in self._handlers.items():
            signal.signal(sig, handler)
        if isinstance(error, (Stopped, KeyboardInterrupt)):
            name, status = (error.name, error.status) if isinstance(error, Stopped) else \
                ("an interrupt (Ctrl-C)", 130)
            sys.stderr.write(f"\nstopped by {name} {self._where()}; "
                             f"{self._last_checkpoint()}\n")
            raise SystemExit(status)
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            run_folder.refuse("E0605", f"no space left on the device {self._where()} "
                                       f"({error.filename or self.folder})",
                              hint=f"free some space; {self._last_checkpoint()}", status=4)
        if isinstance(error, NonFiniteLoss):
            sys.stderr.write(f"\nstopped: {error} {self._where()}; "
                             f"{self._last_checkpoint()}\n")
            raise SystemExit(1)
        if isinstance(error, TaskError):
            sys.stderr.write(f"error: {error}\n")
            raise SystemExit(1)
        if isinstance(error, SettingError):
            sys.stderr.write(f"error[E0207]: {error}\n")
            raise SystemExit(2)
        wanted = _allocation(error)
        if wanted is not None:
            run_folder.refuse("E0604", f"the run needs more memory than this machine has: "
                                       f"allocating {wanted} failed {self._where()}",
                              hint="lower the sizes that multiply: meta_batch, collect "
                                   "counts, hidden units, evaluate.instances", status=4)
        return False

    def _where(self) -> str:
        return f"at iteration {self.iteration}" + (f" of {self.loop}" if self.loop else "")

    def _last_checkpoint(self) -> str:
        saved = self.folder / run_folder.CHECKPOINT
        if not saved.is_file():
            return "no checkpoint was written before it"
        done = ", ".join(f"{loop} iteration {n}" for loop, n in self.completed.items())
        return (f"the last checkpoint is {saved} ({done}); --resume {self.folder} continues "
                "from it")

    # -- checkpoints --
    def restore(self, state: State) -> None:
        """Start the run: on `--resume`, load the checkpoint into `state` (proven whole,
        this spec's, and fitting its models) before anything in the folder changes; then
        write the run's files."""
        self._state = state
        needed, available = _needed_bytes(state), _available_bytes()
        if available is not None and needed > available:  # the kernel would kill it later
            run_folder.refuse("E0604", f"the run needs at least {needed / 1e9:,.1f} GB for its "
                                       f"models, memories and their optimizer state; this "
                                       f"machine has {available / 1e9:,.1f} GB available",
                              hint="lower the sizes that multiply: capacities, hidden units, "
                                   "meta_batch", status=4)
        resuming = self.options.resume is not None
        if resuming and (self.folder / run_folder.CHECKPOINT).is_file():
            saved = run_folder.load(self.folder, self.spec, self.digest)
            try:
                state.load_state_dict(saved["state"])
                self.completed = {str(k): int(v) for k, v in saved["completed"].items()}
                self.env_steps = int(saved["env_steps"])
                wall = float(saved["wall_s"])
            except (RuntimeError, KeyError, ValueError, TypeError, AttributeError) as e:
                changed = getattr(self.options, "changed", [])
                run_folder.refuse("E0602", f"{self.folder / run_folder.CHECKPOINT} does not "
                                           f"fit this spec's state: {str(e).splitlines()[0]}",
                                  hint="a resumed run keeps its sizes; this resume changes "
                                       + ", ".join(changed) if changed else None, status=4)
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
        if not (path.exists() or path.is_symlink()):
            return
        fields, rows = self._read_metrics()
        kept = [r for r in rows if int(r["iteration"]) < self.completed.get(r.get("loop", ""), 0)]
        self._rewrite_metrics(fields, kept)

    def _rewrite_metrics(self, fields: list[str], rows: list[dict]) -> None:
        with run_folder.replaced(self.folder / "metrics.csv") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)

    def _read_metrics(self) -> tuple[list[str], list[dict]]:
        """metrics.csv's header and rows, refused (E0602) unless it is a run's."""
        path = self.folder / "metrics.csv"
        try:
            if path.is_symlink() or not path.is_file():
                raise OSError("not a file of the run's own")
            with open(path, newline="", encoding="utf-8") as f:
                reader = csv.DictReader(f)
                fields, rows = reader.fieldnames or [], list(reader)
            for row in rows:
                int(row["iteration"])
        except (OSError, UnicodeDecodeError, csv.Error, KeyError, TypeError, ValueError) as e:
            run_folder.refuse("E0602", f"{path} is not a run's metrics: "
                                       f"{getattr(e, 'strerror', None) or e}", status=4)
        return fields, rows

    # -- the loop --
    def iterations(self, loop: str, total: int):
        """An outer loop's iterations: a phase of the run with its own counter, checkpointed
        progress and `progress` fraction; a resumed run continues each where it stopped."""
        self.loop, self.total = loop, total
        start = self.completed.get(loop, 0)
        self._phase_started, self._phase_start = time.time(), start
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
            if "charts/fitness_mean" in metrics:  # a population's generation
                shown += (f"  fitness mean {metrics['charts/fitness_mean']:.3f} "
                          f"max {metrics['charts/fitness_max']:.3f}")
            print(f"{self.spec} {self.loop} iteration {iteration + 1}/{self.total}  "
                  f"env-steps/s {rate:,.0f}{shown}  "
                  f"{timing(self._phase_started, self._phase_start, iteration + 1, self.total)}",
                  file=sys.stderr)

    def _write_row(self, row: dict) -> None:
        """Append to metrics.csv; a phase that logs other metrics widens the header (the
        earlier rows are rewritten with empty cells for them)."""
        path = self.folder / "metrics.csv"
        if self._writer is not None and set(row) - set(self._writer.fieldnames):
            self._file.close()
            self._writer = None
        if self._writer is None:
            fields, rows = list(row), []
            if path.exists() or path.is_symlink():
                old, rows = self._read_metrics()
                fields = old + [k for k in row if k not in old]
                if fields != old:
                    self._rewrite_metrics(fields, rows)
            else:
                self._rewrite_metrics(fields, [])
            self._file = run_folder.append(path)
            self._writer = csv.DictWriter(self._file, fieldnames=fields)
        self._writer.writerow(row)
        self._file.flush()

    # -- evaluation --
    def write_eval(self, results: list[dict]) -> None:
        from rich.console import Console
        from rich.table import Table

        data = {"spec": self.spec, "seed": self.args.seed,
                "tasks": sorted({r["tasks"] for r in results}), "results": results}
        run_folder.write_atomic(self.folder / "eval.json", json.dumps(data, indent=2))
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
        started = time.time()
        for iteration in range(total):
            self.progress = iteration / max(1, total)
            yield iteration
            if self.show and (iteration + 1) % max(1, total // 10) == 0:
                print(f"{self.label}: {loop} iteration {iteration + 1}/{total}  "
                      f"{timing(started, 0, iteration + 1, total)}", file=sys.stderr)

    def log(self, *args, **kwargs) -> None:
        pass


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def timing(started: float, first: int, done: int, total: int) -> str:
    """Elapsed time of a phase and the time its remaining iterations will take at its
    rate so far (this phase's own: the others, the evaluation and a pretrained baseline
    each say theirs)."""
    elapsed = time.time() - started
    left = elapsed / max(1, done - first) * (total - done)
    return f"elapsed {_clock(elapsed)}  eta {_clock(left)}"


def _version() -> str:
    from metadsl import __version__

    return __version__
