"""One table from several adaptation runs: each run's learner (named by its run folder,
so two runs of one spec stay apart), and the baselines of the first run (every run
evaluates them on the same held-out tasks and draws for its seed).

    python bench/adaptation_table.py RUN [RUN ...] [--figure PNG]

Prints a Markdown table of the mean score ± standard error after each number of inner
steps, as the runs' eval.json files report them; with --figure, draws it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def rows(folders: list[Path]) -> dict[str, dict[int, tuple[float, float]]]:
    """method -> adapt steps -> (mean, stderr): the learners in the order given, then the
    baselines: the first run's, and another run's where it differs (a `pretrained` θ is
    trained by each spec's own inner rule)."""
    learners: dict[str, dict[int, tuple[float, float]]] = {}
    baselines: dict[str, dict[int, tuple[float, float]]] = {}
    for i, folder in enumerate(folders):
        data = json.loads((folder / "eval.json").read_text())
        own: dict[str, dict[int, tuple[float, float]]] = {}
        for r in data["results"]:
            name = folder.name if r["method"] == data["spec"] else r["method"]
            own.setdefault(name, {})[r["adapt_steps"]] = (r["mean"], r["stderr"])
        learners[folder.name] = own.pop(folder.name)
        for method, cells in own.items():
            if baselines.get(method, cells) != cells:
                method = f"{method} ({folder.name})"
            baselines.setdefault(method, cells)
    return {**learners, **baselines}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--figure", type=Path)
    a = parser.parse_args()
    table = rows(a.runs)
    steps = sorted({k for scores in table.values() for k in scores})
    print("| method | " + " | ".join(f"{k} step{'s' if k != 1 else ''}" for k in steps) + " |")
    print("|---|" + "---:|" * len(steps))
    for method, scores in table.items():
        cells = [f"{scores[k][0]:.2f} ± {scores[k][1]:.2f}" if k in scores else "" for k in steps]
        print(f"| {method} | " + " | ".join(cells) + " |")
    if a.figure:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6.5, 3.8))
        for method, scores in table.items():
            ks = sorted(scores)
            ax.errorbar(ks, [scores[k][0] for k in ks], [scores[k][1] for k in ks], marker="o",
                        capsize=2, label=method)
        ax.set_xticks(steps)
        ax.set_xlabel("inner adaptation steps")
        ax.set_ylabel(json.loads((a.runs[0] / "eval.json").read_text())["results"][0]["metric"])
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(a.figure, dpi=120)
        print(f"figure: {a.figure}")


if __name__ == "__main__":
    main()
