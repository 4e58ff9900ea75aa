"""Write docs/asyncapi.yaml: the AsyncAPI document of /api/ws with the default settings (a running server
serves its own, with its settings, at /api/asyncapi.json). tests/test_contract.py checks the file is current.

Usage: .venv/bin/python scripts/make_asyncapi.py
"""
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import config  # noqa: E402
from emotion_app.contract.asyncapi import asyncapi_document  # noqa: E402

HEADER = (
    "# The AsyncAPI 3 document of the emotion_app socket (/api/ws), with the default settings.\n"
    "# Generated from emotion_app/contract by scripts/make_asyncapi.py: edit the models, not this file.\n"
)


def render():
    """The file's text."""
    document = asyncapi_document(config.settings({}))
    return HEADER + yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=100)


if __name__ == "__main__":
    (ROOT / "docs" / "asyncapi.yaml").write_text(render())
