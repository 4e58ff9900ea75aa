#!/usr/bin/env bash
# Set up .venv with the test tools and run the whole test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh requirements-dev.txt
exec .venv/bin/python -m pytest "$@"
