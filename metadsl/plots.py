"""`metadsl plot RUN`: learning curves and the evaluation of a run folder, as PNG."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path


def plot_run(folder: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    written = []
    if (folder / "metrics.csv").is_file():
        written.append(_curves(folder))
    if (folder / "eval.json").is_file():
        written.append(_evaluation(folder))
    return written


def _curves(folder: Path) -> Path:
    import matplotlib.pyplot as plt

    with open(folder / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    keys = [k for k in rows[0] if k not in ("loop", "iteration", "env_steps", "wall_s")]
    # against environment steps where the run takes any; else against iterations (all
    # phases in order)
    by_steps = any(float(r["env_steps"] or 0) > 0 for r in rows)
    x_of = {id(r): float(r["env_steps"]) if by_steps else i for i, r in enumerate(rows)}
    levels = _baseline_levels(folder)
    fig, axes = plt.subplots(len(keys), 1, figsize=(7, 2.6 * len(keys)), squeeze=False)
    for ax, key in zip(axes[:, 0], keys):
        logged = [r for r in rows if r[key] != ""]  # each phase logs its own metrics
        steps = [x_of[id(r)] for r in logged]
        values = [float(r[key]) for r in logged]
        window = max(1, len(values) // 50)  # a running mean shows the trend under the noise
        smooth = [sum(values[max(0, i - window + 1): i + 1]) / len(values[max(0, i - window + 1):
                                                                           i + 1])
                  for i in range(len(values))]
        ax.plot(steps, values, alpha=0.3, linewidth=0.8)
        ax.plot(steps, smooth, linewidth=1.6)
        if key == "charts/return":  # the held-out baselines' levels, for reference
            for i, (method, level) in enumerate(levels):
                ax.axhline(level, linestyle="--", linewidth=0.9, color=f"C{(i + 2) % 10}",
                           label=method)
            if levels:
                ax.legend(fontsize=7, loc="lower right")
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("environment steps" if by_steps else "iterations")
    fig.suptitle(folder.name)
    fig.tight_layout()
    out = folder / "learning_curves.png"
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def _baseline_levels(folder: Path) -> list[tuple[str, float]]:
    """Each baseline's mean on the held-out tasks (before any adaptation), where the
    evaluation scores what training logs as its return."""
    path = folder / "eval.json"
    if not path.is_file():
        return []
    data = json.loads(path.read_text())
    learner = data.get("spec")
    return [(r["method"], float(r["mean"])) for r in data.get("results", [])
            if r["method"] != learner and r.get("metric") in ("total_reward", "return")
            and r.get("adapt_steps", 0) == 0]


def _evaluation(folder: Path) -> Path:
    import matplotlib.pyplot as plt

    data = json.loads((folder / "eval.json").read_text())
    results = data["results"]
    by_task: dict[str, list[dict]] = {}
    for r in results:
        by_task.setdefault(r.get("tasks", ""), []).append(r)
    panels: list[tuple[str, list[dict]]] = []  # bars: one panel per task and metric
    for task, rows in by_task.items():
        lines = "adapt_steps" in rows[0] or any(
            re.match(r"mse_after_(\d+)_examples", r["metric"]) for r in rows)
        metrics = [rows] if lines else \
            [[r for r in rows if r["metric"] == m] for m in dict.fromkeys(r["metric"] for r in rows)]
        panels += [(task, part) for part in metrics]
    fig, axes = plt.subplots(len(panels), 1, figsize=(8, 3.2 * len(panels)), squeeze=False)
    for ax, (task, rows) in zip(axes[:, 0], panels):
        examples = [r for r in rows if re.match(r"mse_after_(\d+)_examples", r["metric"])]
        if examples:  # error against the number of examples seen, one line per method
            _lines(ax, examples, lambda r: int(re.findall(r"\d+", r["metric"])[0]))
            ax.set_xlabel("examples seen")
            ax.set_ylabel("squared error of the next prediction")
        elif "adapt_steps" in rows[0]:  # score against inner steps, one line per method
            _lines(ax, rows, lambda r: r["adapt_steps"])
            ax.set_xlabel("inner adaptation steps")
            ax.set_xticks(sorted({r["adapt_steps"] for r in rows}))
            ax.set_ylabel(rows[0]["metric"])
        else:
            names = [r["method"] for r in rows]
            ax.barh(names, [r["mean"] for r in rows], xerr=[r["stderr"] for r in rows],
                    color=["#1f5fbf" if n == data["spec"] else "#999999" for n in names])
            ax.invert_yaxis()
            ax.set_xlabel(rows[0]["metric"])
            lo = min(r["mean"] - r["stderr"] for r in rows)
            hi = max(r["mean"] + r["stderr"] for r in rows)
            ax.set_xlim(lo - 0.1 * (hi - lo + 1e-9), hi + 0.1 * (hi - lo + 1e-9))
        ax.set_title(task)
        ax.grid(alpha=0.3, axis="x")
    fig.suptitle(f"{data['spec']}: held-out evaluation (seed {data['seed']})")
    fig.tight_layout()
    out = folder / "evaluation.png"
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def _lines(ax, rows: list[dict], x) -> None:
    """One line with error bars per method, over x(row)."""
    for method in dict.fromkeys(r["method"] for r in rows):
        pts = sorted((x(r), r["mean"], r["stderr"]) for r in rows if r["method"] == method)
        ax.errorbar([p[0] for p in pts], [p[1] for p in pts], [p[2] for p in pts],
                    marker="o", label=method, capsize=2)
    ax.legend()
