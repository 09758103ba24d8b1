#!/usr/bin/env bash
# The main job: set up, check every family's spec, draw MAML's loops, then train RL² on
# 5-armed bandits (10 pulls per trial) for a few minutes and print its evaluation on
# 20,000 held-out bandits against the classical baselines.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
M=.venv/bin/metadsl
mkdir -p out

echo "== metadsl check: every spec in specs/"
$M check specs/*.mrl

if command -v dot >/dev/null; then
    $M graph specs/maml_nav2d.mrl --format svg -o out/maml_nav2d.svg
else
    $M graph specs/maml_nav2d.mrl --format dot -o out/maml_nav2d.dot
fi
echo "== MAML's loop graph written to out/"

echo
echo "== metadsl run specs/rl2_bandits.mrl (about 3 minutes on 2 cores)"
$M run specs/rl2_bandits.mrl --out out/rl2_bandits "$@"
