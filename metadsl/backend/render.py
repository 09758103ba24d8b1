"""Drawings of the IR: Graphviz DOT, Mermaid, and SVG/PNG through Graphviz's `dot`.

Loops are nested clusters (an outer loop holds the inner loop it runs); every edge is
labelled with the data it carries."""

from __future__ import annotations

import re
import shutil
import subprocess

from ..diagnostics import CompileError, Diagnostic
from ..middle.graph import IR, CollectNode, DataNode, LoopNode, MemoryNode, Node, UpdateNode

_SHAPES = {"tasks": "folder", "model": "box3d", "memory": "cylinder", "meta": "hexagon",
           "data": "note", "collect": "parallelogram", "store": "cds", "update": "box",
           "loop": "plaintext"}
_EDGE_STYLE = {"data": "", "update": ', style=bold, color="#1f5fbf"',
               "state": ", style=dashed", "through": ', style=dotted, color="#c03030"'}


def _loop_caption(n: LoopNode) -> str:
    if n.loop_kind == "inner":
        extra = f"task ~ {n.tasks}"
    else:
        extra = ", ".join(f"{k} = {v}" for k, v in n.settings.items()) or "outer loop"
    steps = n.settings.get("steps")
    if n.loop_kind == "inner" and steps:
        extra += f", steps = {steps}"
    return extra


def _node_label(n: Node) -> str:
    if isinstance(n, UpdateNode):
        verb = {"minimize": "on", "maximize": "maximizing", "toward": "toward"}[n.objective]
        text = f"{n.mode} {', '.join(n.targets)}\nby {n.rule}\n{verb} {n.expression}"
        return text if len(text) < 90 else text[:87] + "..."
    if isinstance(n, CollectNode):
        return f"collect {n.count} {n.unit}\n{n.source} {n.policy}"
    if isinstance(n, LoopNode):
        return _loop_caption(n)
    if isinstance(n, MemoryNode):
        return f"{n.label}\nreset {'never' if n.scope == 'never' else 'per ' + n.scope}" + \
            ("" if n.written else " (default)")
    return n.label


def _children(g: IR) -> dict[str | None, list[str]]:
    kids: dict[str | None, list[str]] = {}
    for nid in sorted(g.nodes):
        node = g.nodes[nid]["node"]
        owner = node.parent if isinstance(node, LoopNode) else node.loop
        kids.setdefault(owner, []).append(nid)
    return kids


def _q(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def to_dot(g: IR) -> str:
    kids = _children(g)
    lines = ["digraph metadsl {", "  compound=true;", "  rankdir=TB;",
             f"  label={_q(g.graph['spec'] + ': ' + g.graph['title'])};", "  labelloc=t;",
             '  node [fontname="Helvetica", fontsize=10];',
             '  edge [fontname="Helvetica", fontsize=10];']

    def emit(owner: str | None, indent: str) -> None:
        for nid in kids.get(owner, []):
            node = g.nodes[nid]["node"]
            if isinstance(node, LoopNode):
                lines.append(f"{indent}subgraph {_q('cluster_' + nid)} {{")
                lines.append(f"{indent}  label={_q(node.loop_kind + ' loop ' + node.label)};")
                style = "rounded" + (",filled" if node.loop_kind == "inner" else "")
                lines.append(f'{indent}  style="{style}"; fillcolor="#f4f7fb";')
                lines.append(f"{indent}  {_q(nid)} [label={_q(_node_label(node))}, "
                             f"shape=plaintext];")
                emit(nid, indent + "  ")
                lines.append(f"{indent}}}")
            else:
                lines.append(f"{indent}{_q(nid)} [label={_q(_node_label(node))}, "
                             f"shape={_SHAPES.get(node.kind, 'box')}];")

    emit(None, "  ")
    for u, v, d in sorted(g.edges(data=True), key=lambda e: (e[0], e[1], e[2]["name"])):
        lines.append(f"  {_q(u)} -> {_q(v)} [label={_q(d['label'])}{_EDGE_STYLE[d['style']]}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _mid(nid: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", nid.replace("'", "_prime"))


def to_mermaid(g: IR) -> str:
    kids = _children(g)
    lines = ["flowchart TB"]

    def emit(owner: str | None, indent: str) -> None:
        for nid in kids.get(owner, []):
            node = g.nodes[nid]["node"]
            label = _node_label(node).replace('"', "'").replace("\n", "<br/>")
            if isinstance(node, LoopNode):
                lines.append(f'{indent}subgraph {_mid(nid)}_box["{node.loop_kind} loop '
                             f'{node.label}"]')
                lines.append(f'{indent}  {_mid(nid)}(["{label}"])')
                emit(nid, indent + "  ")
                lines.append(f"{indent}end")
            elif isinstance(node, DataNode):
                lines.append(f'{indent}{_mid(nid)}[/"{label}"/]')
            else:
                lines.append(f'{indent}{_mid(nid)}["{label}"]')

    emit(None, "  ")
    arrows = {"data": "-->", "update": "==>", "state": "-.->", "through": "-.->"}
    for u, v, d in sorted(g.edges(data=True), key=lambda e: (e[0], e[1], e[2]["name"])):
        lines.append(f'  {_mid(u)} {arrows[d["style"]]}|"{d["label"]}"| {_mid(v)}')
    return "\n".join(lines) + "\n"


class MissingTool(Exception):
    """A program the command needs is not installed: nothing is wrong with the spec."""

    def __init__(self, message: str, hint: str):
        super().__init__(message)
        self.hint = hint


def to_image(g: IR, fmt: str) -> bytes:
    """SVG or PNG bytes through Graphviz's `dot`."""
    dot = shutil.which("dot")
    if dot is None:
        raise MissingTool(f"drawing {fmt} needs Graphviz's `dot`, which is not installed",
                          "install Graphviz (Debian/Ubuntu: `apt-get install graphviz`; macOS: "
                          "`brew install graphviz`), or use --format dot|mermaid|json")
    result = subprocess.run([dot, f"-T{fmt}"], input=to_dot(g).encode(), capture_output=True,
                            timeout=60)
    if result.returncode != 0:
        raise CompileError([Diagnostic("E0901", "internal compiler error in phase graph: dot "
                                       f"failed: {result.stderr.decode(errors='replace')[:300]}")])
    return result.stdout
