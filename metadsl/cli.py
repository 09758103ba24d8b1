"""The command line: thin commands over the driver.

Exit codes: 0 clean, 1 errors in a spec, 2 usage error, 3 a phase that is not built yet.
No command imports torch; `check` and `fmt` do not import networkx either.
"""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer

from .diagnostics import CompileError

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True,
                  help="metadsl: a declarative meta-reinforcement-learning language.")

# usage errors exit 2 (click's, and a run's options and folders); 4: the environment
# (a missing program, an unreadable file, the operating system)
EXIT_ERRORS, EXIT_NOT_BUILT, EXIT_ENVIRONMENT = 1, 3, 4


class DiagFormat(str, Enum):
    text = "text"
    json = "json"


class Emit(str, Enum):
    ast = "ast"
    ir = "ir"
    py = "py"


class GraphFormat(str, Enum):
    dot = "dot"
    mermaid = "mermaid"
    json = "json"
    svg = "svg"
    png = "png"


def _report(e: CompileError, fmt: DiagFormat = DiagFormat.text) -> None:
    from .diagnostics import render_all, to_json

    if fmt == DiagFormat.json:
        sys.stdout.write(to_json(e.diagnostics) + "\n")
    else:
        sys.stderr.write(render_all(e.diagnostics, getattr(e, "source", None)) + "\n")


def _front(path: str, until: str):
    from .driver import front_end

    return front_end(path, until)


@app.command()
def check(
    specs: List[str] = typer.Argument(..., metavar="SPEC...", help="the .mrl files to check"),
    format: DiagFormat = typer.Option(DiagFormat.text, "--format", help="diagnostics as text "
                                      "or JSON (for editors)"),
    emit: Optional[Emit] = typer.Option(None, "--emit", help="print a phase's output: the AST, "
                                        "the loop program after its passes (ir), or the "
                                        "generated Python module (py)"),
) -> None:
    """Parse and check specs; report every error found, with its location."""
    failed = []
    for path in specs:
        if emit == Emit.py:
            sys.stdout.write(_compiled(path))
            continue
        try:
            result = _front(path, "program" if emit == Emit.ir else "check")
        except CompileError as e:
            _report(e, format)
            failed.extend(e.diagnostics)
            continue
        if emit == Emit.ast:
            from .driver import dump_ast

            sys.stdout.write(dump_ast(result.module) + "\n")
        elif emit == Emit.ir:
            from .middle.program import dumps

            sys.stdout.write(dumps(result.program) + "\n")
        elif format == DiagFormat.json:
            sys.stdout.write('{"diagnostics": []}\n')
    if failed:
        raise typer.Exit(EXIT_ERRORS)
    if format == DiagFormat.text and emit is None:
        n = len(specs)
        sys.stderr.write(f"ok: {n} spec{'s' if n != 1 else ''} checked\n")


@app.command()
def graph(
    spec: str = typer.Argument(..., metavar="SPEC"),
    format: GraphFormat = typer.Option(GraphFormat.dot, "--format", help="dot, mermaid, json, "
                                       "or svg/png through Graphviz"),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="write here instead of "
                                          "standard output"),
) -> None:
    """Draw the loop graph: nested loops as clusters, edges labelled with their data."""
    if format == GraphFormat.png and output is None:
        raise typer.BadParameter("a PNG needs an output file: -o FILE.png",
                                 param_hint="'--format png'")
    from .backend import render

    try:
        result = _front(spec, "ir")
        from .middle.graph import dumps

        if format in (GraphFormat.svg, GraphFormat.png):
            data = render.to_image(result.ir, format.value)  # its errors are the tool's
        else:
            text = {GraphFormat.dot: render.to_dot, GraphFormat.mermaid: render.to_mermaid,
                    GraphFormat.json: dumps}[format](result.ir)
            data = (text if text.endswith("\n") else text + "\n").encode()
    except CompileError as e:
        _report(e)
        raise typer.Exit(EXIT_ERRORS)
    except render.MissingTool as e:
        sys.stderr.write(f"error: {e}\n  = help: {e.hint}\n")
        raise typer.Exit(EXIT_ENVIRONMENT)
    _write(data, output)


def _write(data: bytes, output: Optional[Path]) -> None:
    if output is None:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return
    try:
        output.write_bytes(data)
    except OSError as e:
        sys.stderr.write(f"error: cannot write {output}: {e.strerror or e}\n")
        raise typer.Exit(EXIT_ERRORS)


@app.command()
def fmt(
    specs: List[str] = typer.Argument(..., metavar="SPEC..."),
    check: bool = typer.Option(False, "--check", help="change nothing; exit 1 if a file is not "
                               "formatted"),
    stdout: bool = typer.Option(False, "--stdout", help="print the result instead of writing"),
) -> None:
    """Rewrite specs in the canonical layout (comments kept)."""
    from .front.formatter import format_module

    unformatted, failed = [], False
    for path in specs:
        try:
            result = _front(path, "ast")
        except CompileError as e:
            _report(e)
            failed = True
            continue
        text = format_module(result.module, result.source)
        if stdout:
            sys.stdout.write(text)
        elif text != result.source:
            unformatted.append(path)
            if not check:
                _write(text.encode(), Path(path))
    for path in unformatted:
        sys.stderr.write(f"{'would reformat' if check else 'reformatted'} {path}\n")
    if failed or (check and unformatted):
        raise typer.Exit(EXIT_ERRORS)


def _compiled(spec: str) -> str:
    """The generated module's source, or exit: 1 for errors, 3 for what has no back end."""
    from .driver import NotBuilt, compile_module

    try:
        return compile_module(spec)
    except CompileError as e:
        _report(e)
        raise typer.Exit(EXIT_ERRORS)
    except NotBuilt as e:
        sys.stderr.write(f"{spec}: the spec checks, but the PyTorch back end does not build "
                         "these constructs yet:\n" +
                         "".join(f"{spec}:{loc.line}:{loc.column}: not built: {what}\n"
                                 for what, loc in e.missing))
        raise typer.Exit(EXIT_NOT_BUILT)


@app.command(name="compile")
def compile_(
    spec: str = typer.Argument(..., metavar="SPEC"),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="write here instead of "
                                          "standard output"),
) -> None:
    """Compile a spec to one PyTorch training module (it imports the metadsl runtime:
    task families, models, rules, rollouts, evaluation, run folders)."""
    if output is not None and (output.suffix == ".mrl" or _same_file(output, Path(spec))):
        sys.stderr.write(f"error: -o {output} would overwrite a spec with Python: the "
                         "module goes in a file of its own\n  = help: -o train.py\n")
        raise typer.Exit(EXIT_ERRORS)
    _write(_compiled(spec).encode(), output)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and a.samefile(b)
    except OSError:
        return False


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def run(
    ctx: typer.Context,
    spec: str = typer.Argument(..., metavar="SPEC"),
) -> None:
    """Compile, train and evaluate a spec. Options go to the training module: --out DIR
    (default runs/SPEC-TIME), --force (start over in a folder that holds files), --resume
    DIR, --seed N, --iterations N, --threads N (torch threads; 0: one per core), --set
    PATH=VALUE (repeatable; `metadsl settings SPEC` lists every path with its default)."""
    module = _training_module(spec)
    try:
        module.main(list(ctx.args))
    except SystemExit as e:
        if e.code not in (None, 0):
            if isinstance(e.code, str):
                sys.stderr.write(e.code + "\n")
            raise typer.Exit(EXIT_ERRORS if isinstance(e.code, str) else e.code)


def _training_module(spec: str):
    """The spec's generated module, imported (our generated code, from a checked spec)."""
    import importlib.util
    import tempfile

    source = _compiled(spec)
    folder = Path(tempfile.mkdtemp(prefix="metadsl-"))
    module_path = folder / "train.py"
    module_path.write_text(source, encoding="utf-8")
    loaded = importlib.util.spec_from_file_location("metadsl_train", module_path)
    module = importlib.util.module_from_spec(loaded)
    sys.modules[loaded.name] = module  # dataclasses look their module up there
    loaded.loader.exec_module(module)
    return module


@app.command()
def settings(spec: str = typer.Argument(..., metavar="SPEC")) -> None:
    """List every `--set PATH=VALUE` path of a spec's run, with its default, bounds and what
    it sets."""
    from .runtime.runs.session import settings_help

    module = _training_module(spec)
    print(settings_help(module.Args, module.SETTINGS))


@app.command()
def plot(run: Path = typer.Argument(..., metavar="RUN", help="a run folder")) -> None:
    """Write learning curves and the evaluation of a run folder as PNG files in it."""
    if not (run / "metrics.csv").is_file() and not (run / "eval.json").is_file():
        sys.stderr.write(f"error: {run} is not a run folder (no metrics.csv or eval.json)\n")
        raise typer.Exit(EXIT_ERRORS)
    from .plots import plot_run

    try:
        written = plot_run(run)
    except (OSError, ValueError, KeyError, TypeError, IndexError) as e:  # json errors included
        sys.stderr.write(f"error[E0602]: {run} holds a metrics.csv or eval.json that is not a "
                         f"run's: {type(e).__name__}: {e}\n")
        raise typer.Exit(EXIT_ENVIRONMENT)
    for path in written:
        print(path)


def main() -> None:
    try:
        app()
    except SystemExit:
        raise
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        sys.exit(130)
    except BaseException as e:  # noqa: BLE001 - never a traceback for the user
        sys.stderr.write(f"error[E0901]: internal compiler error in the command line: "
                         f"{type(e).__name__}: {e}\n  = help: please report this\n")
        sys.exit(EXIT_ERRORS)


if __name__ == "__main__":
    main()
