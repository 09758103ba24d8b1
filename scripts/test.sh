#!/usr/bin/env bash
# Set up and run the test suite, one pytest worker per core (under 10 minutes on 2).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python -m pytest -n auto --dist loadgroup "$@"
