"""One rule per fact: what the checker decides (the evaluated loop, memory scopes, what
is built) is read by every later phase, so a spec that checks runs what it says."""

from __future__ import annotations

import json

from metadsl.driver import front_end

from .conftest import ROOT, metadsl

TWO_PHASES = (ROOT / "tests" / "specs" / "pretrain_then_maml.mrl").read_text()
PRETRAIN = TWO_PHASES[TWO_PHASES.index("inner mixture"):TWO_PHASES.index("inner adapt")]


def _swapped(evaluate_loop: bool) -> str:
    """The MAML phase declared first, multi-task pretraining last."""
    text = TWO_PHASES.replace(PRETRAIN, "")
    text = text.replace("evaluate {", PRETRAIN + "evaluate {")
    return text.replace("evaluate {", "evaluate {\n    loop = adapt") if evaluate_loop else text


def _rows(out) -> set:
    return {(r["method"], r["adapt_steps"])
            for r in json.loads((out / "eval.json").read_text())["results"]}


EXPECTED = {(m, k) for m in ("pretrain_then_maml", "pretrained", "random_init")
            for k in (0, 1, 2)}


def test_the_evaluation_measures_the_adapting_phase_in_either_order(tmp_path):
    swapped = tmp_path / "swapped.mrl"
    swapped.write_text(_swapped(evaluate_loop=True))
    for spec, out in (("tests/specs/pretrain_then_maml.mrl", tmp_path / "a"),
                      (str(swapped), tmp_path / "b")):
        r = metadsl("run", spec, "--out", str(out))
        assert r.returncode == 0, r.stderr[-3000:]
        assert _rows(out) == EXPECTED


def test_the_evaluated_loop_is_the_checker_s_and_the_program_reads_it(tmp_path):
    program = front_end("two.mrl", "program", data=TWO_PHASES.encode()).program
    assert (program.evaluate.kind, program.evaluate.loop, program.evaluate.outer) == \
        ("after_adaptation", "adapt", "meta")
    assert program.evaluate.adapt_steps == (0, 1, 2)


def test_adaptation_settings_for_a_loop_that_does_not_adapt_are_an_error(tmp_path):
    path = tmp_path / "swapped.mrl"
    path.write_text(_swapped(evaluate_loop=False))
    r = metadsl("check", str(path))
    assert r.returncode == 1
    assert "error[E0213]: `adapt_steps` has no effect: the evaluated loop 'mixture'" in r.stderr
    assert "`loop = adapt`" in r.stderr


def _unread_settings(source: str) -> set[str]:
    """Args fields the generated module never reads (`args.NAME`)."""
    import ast

    tree = ast.parse(source)
    fields = {n.target.id for c in tree.body if isinstance(c, ast.ClassDef) and c.name == "Args"
              for n in c.body if isinstance(n, ast.AnnAssign)}
    read = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute) and
            isinstance(n.value, ast.Name) and n.value.id == "args"}
    return fields - read


def test_every_setting_of_every_compiled_spec_is_read_by_its_module():
    """Each setting the loop program carries reaches the code that runs (a setting the
    lowering dropped would be a silent no-op)."""
    from metadsl.driver import compile_module

    from .conftest import SPECS
    from metadsl.diagnostics import NotBuilt

    specs = list(SPECS) + sorted((ROOT / "tests" / "specs").glob("*.mrl"))
    compiled = 0
    for path in specs:
        try:
            source = compile_module(str(path), path.read_bytes())
        except NotBuilt:
            continue
        compiled += 1
        assert not _unread_settings(source), (path.name, _unread_settings(source))
    assert compiled >= 25


def test_evaluation_task_sets_of_different_seeds_and_purposes_are_disjoint():
    """Every evaluation draw has its own key (seed, "evaluate", purpose): seed s's
    validation tasks are no longer seed s + 2's test tasks, nor any other set."""
    from metadsl.runtime.runs import evaluation
    from metadsl.runtime.tasks import families

    nav = families.Nav2D()
    goals = {}
    for seed in range(1, 5):
        for purpose in ("held-out tasks", "validation tasks"):
            batch = nav.sample(200, 100, evaluation.key(seed, purpose))
            goals[seed, purpose] = {tuple(g) for g in batch.goal.tolist()}
    sets = list(goals.items())
    for i, (a, ga) in enumerate(sets):
        for b, gb in sets[i + 1:]:
            assert not ga & gb, (a, b)
    # a key is a name, not a position in a stream: drawing it again draws the same
    again = nav.sample(200, 100, evaluation.key(3, "held-out tasks"))
    assert {tuple(g) for g in again.goal.tolist()} == goals[3, "held-out tasks"]


def _not_built(text: str, tmp_path) -> str:
    path = tmp_path / "spec.mrl"
    path.write_text(text)
    r = metadsl("compile", str(path), "-o", str(tmp_path / "train.py"))
    assert r.returncode == 3, r.stderr
    return r.stderr


MAML = (ROOT / "specs" / "maml_nav2d.mrl").read_text()


def test_what_fails_only_at_run_time_is_refused_at_compile_time(tmp_path):
    sparse = MAML.replace("action_scale = 0.1,\n)", "action_scale = 0.1,\n    sparse = true,\n)")
    assert "not built: `sparse = true` of nav2d (only sparse = false is built)" in \
        _not_built(sparse, tmp_path)
    annealed = MAML.replace("on reinforce_linear(gamma = 0.99) over tau",
                            "on reinforce_linear(gamma = anneal(0.99, 0.9)) over tau")
    assert "not built: anneal(...) in an `adapt` loss" in _not_built(annealed, tmp_path)
    bandits = (ROOT / "specs" / "rl2_bandits.mrl").read_text()
    tuned = bandits.replace("ucb1,", "ucb1(c = 2.0),")
    assert tuned != bandits
    assert "not built: `c = 2` of ucb1 (only c = 0 is built)" in _not_built(tuned, tmp_path)


def test_a_loop_named_like_a_runtime_module_does_not_shadow_it(tmp_path):
    text = (ROOT / "specs" / "mfec.mrl").read_text()
    import re

    inner = re.search(r"inner (\w+)\(", text).group(1)
    renamed = re.sub(rf"\b{inner}\b", "episodic", text)
    path = tmp_path / "episodic_named.mrl"
    path.write_text(renamed)
    r = metadsl("run", str(path), "--iterations", "2", "--set", "evaluate.instances=4",
                "--out", str(tmp_path / "run"))
    assert r.returncode == 0, r.stderr[-2000:]


def test_mujoco_gravity_and_friction_randomize():
    from metadsl.runtime.tasks.gym_tasks import GymTasks

    import torch

    family = GymTasks("HalfCheetah-v5", 10, {"gravity": (2.0, 2.0), "friction": (0.5, 0.5)})
    env = family.env(family.sample(2, 10, torch.Generator().manual_seed(0)))
    model = env.vec.envs[1].unwrapped.model
    assert model.opt.gravity[2] == 2.0 * family.nominal["gravity"][2]
    assert (model.geom_friction == 0.5 * family.nominal["friction"]).all()
