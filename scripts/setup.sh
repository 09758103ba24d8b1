#!/usr/bin/env bash
# Create .venv and install metadsl with its test tools (idempotent; ~1 min the first time,
# most of it torch's CPU wheel, which pyproject.toml pins to 2.13.*; Ray for the tests of
# backend = ray).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[dev,ray]'
