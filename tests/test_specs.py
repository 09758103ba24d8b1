"""Every family's spec checks, draws, and survives the formatter unchanged in meaning."""

from __future__ import annotations

import json

import pytest

from metadsl.backend import render
from metadsl.front.ast import strip_spans, walk
from metadsl.driver import front_end
from metadsl.front.formatter import format_module
from metadsl.middle.graph import dumps
from metadsl.front.parser import parse

from .conftest import SPECS, STDLIB

FAMILIES = {"hochreiter2001", "rl2_bandits", "rl2_tabular_mdp", "wang2016_dependent_bandits",
            "maml_nav2d", "fomaml_nav2d", "reptile_sine", "maml_cheetah_vel", "metagrad", "epg",
            "maesn", "mfec", "nec", "episodic_lstm", "poet", "diayn", "unsupervised_meta_rl",
            "domain_randomization"}


def test_every_family_has_a_spec():
    assert {p.stem for p in SPECS} >= FAMILIES


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.stem)
def test_spec_checks_and_draws(spec):
    result = front_end(str(spec), "ir")
    assert result.module.name.id == spec.stem
    assert result.module.title is not None
    g = result.ir
    assert g.number_of_nodes() > 3
    dot = render.to_dot(g)
    assert dot.startswith("digraph") and "cluster_loop:" in dot
    assert render.to_mermaid(g).startswith("flowchart TB")
    assert json.loads(dumps(g))["spec"] == spec.stem


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.stem)
def test_spec_cites_its_paper(spec):
    header = spec.read_text(encoding="utf-8").split("\n\n")[1]
    assert header.startswith("#") and any(ch.isdigit() for ch in header)


@pytest.mark.parametrize("path", SPECS + STDLIB, ids=lambda p: p.stem)
def test_fmt_round_trips_and_is_idempotent(path):
    source = path.read_text(encoding="utf-8")
    module = parse(source)
    once = format_module(module, source)
    assert strip_spans(parse(once)) == strip_spans(module)
    assert format_module(parse(once), once) == once
    assert once == source, f"{path.name} is not in canonical form: run `metadsl fmt`"
    assert once.count("#") == source.count("#")  # no comment lost


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.stem)
def test_every_ast_node_has_a_position(spec):
    module = parse(spec.read_text(encoding="utf-8"))
    for node in walk(module):
        span = getattr(node, "span", None)
        assert span is not None and span.line >= 1 and span.end >= span.start, node


def test_maml_drawing_nests_inner_in_outer_with_theta_flow():
    g = front_end("specs/maml_nav2d.mrl", "ir").ir
    assert g.nodes["loop:adapt"]["node"].parent == "loop:meta"
    labels = {(u, v): d["label"] for u, v, d in g.edges(data=True)}
    adapt = next(n for n, d in g.nodes(data=True) if getattr(d["node"], "mode", "") == "adapt")
    assert labels[("model:pi", adapt)] == "θ"
    assert labels[(adapt, "params:pi'")] == "θ′"
    collect_outer = next(v for u, v in labels if u == "params:pi'")
    assert g.nodes[collect_outer]["node"].loop == "loop:meta"
    assert labels[(collect_outer, "data:meta.tau'")] == "τ′"
    update = next(v for u, v in labels if u == "data:meta.tau'")
    assert labels[(update, "model:pi")] == "Δθ"
    # the DOT drawing opens the inner cluster inside the outer one
    dot = render.to_dot(g)
    outer, inner = dot.index('"cluster_loop:meta"'), dot.index('"cluster_loop:adapt"')
    assert outer < inner < dot.index('"meta.1"')


def test_metagrad_edges_carry_gamma_and_lambda_into_the_inner_step():
    g = front_end("specs/metagrad.mrl", "ir").ir
    labels = {d["label"] for u, v, d in g.edges(data=True) if u.startswith("meta:")}
    assert {"γ", "λ"} <= labels
    through = [d for _, _, d in g.edges(data=True) if d["style"] == "through"]
    assert through and through[0]["label"] == "∂θ′/∂θ"


def test_reference_doc_is_generated_from_the_registry():
    from metadsl.docgen import reference

    from .conftest import ROOT

    assert (ROOT / "docs" / "reference.md").read_text(encoding="utf-8") == reference(), \
        "run `python -m metadsl.docgen > docs/reference.md`"
