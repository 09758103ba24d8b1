"""The command line as users and scripts meet it: exit codes, output, no tracebacks."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ROOT, metadsl

RL2 = "specs/rl2_bandits.mrl"




def no_traceback(result: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in result.stderr + result.stdout


def test_check_all_specs_clean():
    specs = [str(p.relative_to(ROOT)) for p in (ROOT / "specs").glob("*.mrl")]
    r = metadsl("check", *specs)
    assert r.returncode == 0, r.stderr
    assert f"ok: {len(specs)} specs checked" in r.stderr


def test_check_reports_errors_with_exit_1():
    r = metadsl("check", "tests/diagnostics/e0201_unknown_rule.mrl")
    assert r.returncode == 1
    assert "error[E0201]: unknown update rule 'adma'" in r.stderr
    assert "did you mean 'adam'?" in r.stderr


def test_json_format_for_editors():
    r = metadsl("check", "--format", "json", "tests/diagnostics/e0208_bad_reset_scope.mrl")
    assert r.returncode == 1
    (d,) = json.loads(r.stdout)["diagnostics"]
    assert d["code"] == "E0208" and d["line"] == 11 and d["hint"] == "did you mean 'task'?"
    clean = metadsl("check", "--format", "json", RL2)
    assert clean.returncode == 0 and json.loads(clean.stdout) == {"diagnostics": []}


@pytest.mark.parametrize("args", [
    [], ["check"], ["check", RL2, "--format", "yaml"], ["check", RL2, "--emit", "pyc"],
    ["graph", RL2, "--format", "gif"], ["graph", RL2, "--format", "png"], ["nosuchcommand"],
    ["check", RL2, "--no-such-flag"],
])
def test_usage_errors_exit_2(args):
    r = metadsl(*args)
    assert r.returncode == 2, (args, r.stderr)
    no_traceback(r)


def test_missing_file_and_directory():
    for target in ("no/such/spec.mrl", "specs"):
        r = metadsl("check", target)
        assert r.returncode == 1 and "error[E0001]" in r.stderr
        no_traceback(r)


@pytest.mark.parametrize("name, content", [
    ("empty.mrl", b""),
    ("blank.mrl", b"\n\n   \n"),
    ("binary.mrl", bytes(range(256)) * 4),
    ("latin1.mrl", "metadsl 1\nspec caf\xe9\n".encode("latin-1")),
    ("huge.mrl", b"metadsl 1\nspec s\n" + b"# padding\n" * 200_000),
    ("deep.mrl", b"metadsl 1\nspec s\ntasks t = f(" + b"[" * 5000 + b"]" * 5000 + b")\n"),
    ("chain.mrl", b"metadsl 1\nspec s\ndef f(x) = " + b"x + " * 20000 + b"x\n"),
    ("truncated.mrl", (ROOT / RL2).read_bytes()[:700]),
    ("bom.mrl", b"\xef\xbb\xbf" + (ROOT / RL2).read_bytes()),
    ("crlf.mrl", (ROOT / RL2).read_bytes().replace(b"\n", b"\r\n")),
])
def test_hostile_inputs_never_trace_back(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    for command in (["check"], ["graph"], ["fmt", "--check"], ["compile"]):
        r = metadsl(*command, str(path))
        no_traceback(r)
        assert r.returncode in (0, 1, 3), (command, r.returncode, r.stderr[-500:])
        assert "E0901" not in r.stderr


def test_emit_ast_and_ir_are_json():
    ast = json.loads(metadsl("check", RL2, "--emit", "ast").stdout)
    assert ast["node"] == "Module" and ast["name"]["id"] == "rl2_bandits"
    ir = json.loads(metadsl("check", RL2, "--emit", "ir").stdout)
    assert ir["node"] == "Program" and [l["name"] for l in ir["loops"]] == ["trial", "meta"]
    kinds = [s["node"] for s in ir["loops"][1]["body"]]
    assert kinds == ["SampleTasks", "Map", "Step", "Log"]
    py = metadsl("check", RL2, "--emit", "py").stdout
    assert py == (ROOT / "tests" / "golden" / "rl2_bandits.py").read_text()


@pytest.mark.parametrize("fmt, marker", [("dot", "digraph"), ("mermaid", "flowchart TB"),
                                         ("json", '"edges"')])
def test_graph_text_formats(fmt, marker, tmp_path):
    out = tmp_path / f"g.{fmt}"
    r = metadsl("graph", "specs/maml_nav2d.mrl", "--format", fmt, "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert marker in out.read_text(encoding="utf-8")


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz is not installed")
@pytest.mark.parametrize("fmt, magic", [("svg", b"<svg"), ("png", b"\x89PNG")])
def test_graph_images(fmt, magic, tmp_path):
    out = tmp_path / f"g.{fmt}"
    r = metadsl("graph", "specs/maml_nav2d.mrl", "--format", fmt, "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert magic in out.read_bytes()[:400]


def test_graph_without_graphviz_says_how_to_install(tmp_path):
    """Nothing is wrong with the spec: no diagnostic code, exit status 4 (the environment)."""
    env = dict(os.environ, PATH=str(Path(sys.executable).parent))  # no `dot` on this PATH
    r = metadsl("graph", "specs/maml_nav2d.mrl", "--format", "svg", "-o",
                str(tmp_path / "g.svg"), env=env)
    assert r.returncode == 4
    assert "Graphviz" in r.stderr and "apt-get install graphviz" in r.stderr
    assert "E0001" not in r.stderr and "<input>" not in r.stderr


def test_fmt_check_and_rewrite(tmp_path):
    assert metadsl("fmt", "--check", *[f"specs/{p.name}" for p in (ROOT / "specs").glob("*.mrl")]
                   ).returncode == 0
    messy = tmp_path / "messy.mrl"
    messy.write_text((ROOT / RL2).read_text().replace("    collect", "  collect")
                     .replace("arms = 5", "arms=5"), encoding="utf-8")
    r = metadsl("fmt", "--check", str(messy))
    assert r.returncode == 1 and "would reformat" in r.stderr
    assert metadsl("fmt", str(messy)).returncode == 0
    assert messy.read_text(encoding="utf-8") == (ROOT / RL2).read_text(encoding="utf-8")


@pytest.mark.parametrize("command", [["run"], ["compile", "-o", "train.py"]])
def test_back_end_commands_say_what_is_missing(command, tmp_path):
    r = metadsl(command[0], "specs/maesn.mrl", *command[1:], cwd=ROOT)
    assert r.returncode == 3
    assert "back end does not build these constructs yet" in r.stderr
    assert "specs/maesn.mrl:18:1: not built: memory z = latent(...)" in r.stderr
    assert not (ROOT / "train.py").exists()
    no_traceback(r)


def test_check_and_graph_never_import_torch_or_networkx_needlessly():
    probe = (
        "import sys\n"
        "from metadsl.cli import app\n"
        "for argv in (['check', '{spec}'], ['fmt', '--check', '{spec}'], ['graph', '{spec}']):\n"
        "    try:\n"
        "        app(argv, standalone_mode=False)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "    print(argv[0], 'torch' in sys.modules, 'networkx' in sys.modules, file=sys.stderr)\n"
    ).format(spec=RL2)
    r = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True)
    lines = [line for line in r.stderr.splitlines() if line.split()[0] in ("check", "fmt", "graph")]
    assert lines == ["check False False", "fmt False False", "graph False True"], r.stderr


def test_the_stdlib_cache_is_read_only_where_this_user_alone_can_write_it(tmp_path):
    """Unpickling runs code: a cache file or folder others can write is rebuilt, not read."""
    import os

    from metadsl.front import stdlib

    folder = tmp_path / "cache"
    folder.mkdir(mode=0o700)
    path = folder / "stdlib.pickle"
    path.write_bytes(b"x")
    for folder_mode, file_mode, readable in ((0o700, 0o600, True), (0o700, 0o666, False),
                                             (0o777, 0o600, False)):
        os.chmod(folder, folder_mode)
        os.chmod(path, file_mode)
        with open(path, "rb") as fh:
            assert stdlib._private(folder, fh.fileno()) is readable



def test_plot_draws_runs_without_environment_steps_and_the_baselines_levels(tmp_path):
    """A supervised run logs no env steps: its curves are drawn against iterations."""
    (tmp_path / "metrics.csv").write_text(
        "loop,iteration,env_steps,wall_s,charts/return\n" +
        "".join(f"meta,{i},0,{i},{i / 10}\n" for i in range(20)))
    (tmp_path / "eval.json").write_text(json.dumps({"spec": "s", "seed": 0, "results": [
        {"tasks": "t", "method": "s", "metric": "return", "mean": 1.9, "stderr": 0.1,
         "episodes": 5},
        {"tasks": "t", "method": "random", "metric": "return", "mean": 0.2, "stderr": 0.1,
         "episodes": 5}]}))
    r = metadsl("plot", str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "learning_curves.png").stat().st_size > 1000
    assert (tmp_path / "evaluation.png").stat().st_size > 1000
    (tmp_path / "eval.json").write_text("{}")
    r = metadsl("plot", str(tmp_path))
    assert r.returncode == 4 and "error[E0602]" in r.stderr and "Traceback" not in r.stderr


def test_run_help_names_every_option_and_settings_lists_every_path():
    r = metadsl("run", "--help")
    assert r.returncode == 0
    text = " ".join(r.stdout.split())
    for option in ("--out", "--force", "--resume", "--seed", "--iterations", "--threads", "--set",
                   "metadsl settings SPEC"):
        assert option in text, option
    r = metadsl("settings", str(ROOT / "specs" / "nec.mrl"))
    assert r.returncode == 0, r.stderr
    assert "  M.capacity = 5000 in [1, 1e+07]\n      dnd(capacity)\n" in r.stdout
    assert "cartpole.horizon = 0" in r.stdout and "episode step limit" in r.stdout


def test_progress_lines_say_elapsed_time_and_eta(tmp_path):
    r = metadsl("run", str(ROOT / "specs" / "maml_sine.mrl"), "--iterations", "20", "--set",
                "evaluate.instances=50", "--out", str(tmp_path / "run"))
    assert r.returncode == 0, r.stderr[-2000:]
    lines = [line for line in r.stderr.splitlines() if "iteration" in line]
    assert lines and all("elapsed 0:" in line and "eta 0:" in line for line in lines), lines
    assert any(line.startswith("evaluation: pretrained baseline") for line in lines)
