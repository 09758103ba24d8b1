#!/usr/bin/env bash
# The main job: set up, check every algorithm family's spec, and draw two of them.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
M=.venv/bin/metadsl
mkdir -p out

echo "== metadsl check: the 18 family specs"
$M check specs/*.mrl

echo
echo "== metadsl graph: MAML's loops (Mermaid; paste into any Mermaid viewer)"
$M graph specs/maml_nav2d.mrl --format mermaid

for spec in maml_nav2d rl2_bandits; do
    if command -v dot >/dev/null; then
        $M graph specs/$spec.mrl --format svg -o out/$spec.svg
    else
        $M graph specs/$spec.mrl --format dot -o out/$spec.dot
    fi
done
echo
echo "== drawings written to out/: $(ls out | tr '\n' ' ')"

echo
echo "== a diagnostic, as a user meets one"
$M check tests/diagnostics/e0201_unknown_rule.mrl || true

echo
echo "== metadsl run: training needs the PyTorch back end (next milestone)"
$M run specs/rl2_bandits.mrl || true
