#!/usr/bin/env bash
# Set up .venv, apply database migrations, and serve the app with gunicorn gevent workers
# (port 8000 unless PORT is set). Configuration comes from the environment: see the README.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh requirements.txt
.venv/bin/flask --app wsgi db upgrade
exec .venv/bin/gunicorn -c gunicorn.conf.py wsgi:app
