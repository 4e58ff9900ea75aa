"""Schemathesis against a real server: every operation of /api/openapi.json, with data generated from the document
(valid and invalid), checked for no 5xx and for answers that conform to the document (statuses, content types,
bodies, headers), invalid data refused, valid data accepted, auth enforced, and undocumented methods refused.

Bounded: a fixed number of examples per operation. The seed is printed; set SCHEMATHESIS_SEED to replay a run.
"""
import os
import random
import secrets
import subprocess

import pytest

from tests.conftest import BIN, ROOT

CONFIG = ROOT / "tests" / "schemathesis.toml"
EXAMPLES = int(os.environ.get("SCHEMATHESIS_EXAMPLES", "6"))
METRICS_TOKEN = "fuzz-metrics-" + secrets.token_hex(8)


@pytest.fixture(scope="module")
def fuzz_server(server_factory):
    return server_factory(METRICS_TOKEN=METRICS_TOKEN)


def schemathesis(server, tokens, seed, *args, timeout=300):
    """Run `schemathesis run` against `server` as the user of `tokens`; return (exit code, output)."""
    env = {
        **os.environ,
        "FUZZ_ACCESS_TOKEN": tokens["access_token"],
        "FUZZ_REFRESH_TOKEN": tokens["refresh_token"],
        "FUZZ_METRICS_TOKEN": METRICS_TOKEN,
    }
    command = [
        str(BIN / "schemathesis"), "--config-file", str(CONFIG), "--no-color", "run", f"{server.url}/api/openapi.json",
        "--checks", "all", "--seed", str(seed), "--workers", "1", "--output-truncate", "false", *args,
    ]
    done = subprocess.run(command, env=env, cwd=server.log_path.parent, capture_output=True, text=True, timeout=timeout)
    return done.returncode, done.stdout + done.stderr


def _user(server):
    # A password of its own: a schema example (or a guess) must not be able to change it mid-run.
    return server.login(password=secrets.token_urlsafe(16))


def test_every_operation_conforms_to_the_document(fuzz_server):
    seed = int(os.environ.get("SCHEMATHESIS_SEED") or random.randrange(2**32))
    print(f"schemathesis seed {seed}: replay with SCHEMATHESIS_SEED={seed}")
    # Logging out revokes the token every other operation is called with: it runs on its own, below.
    code, output = schemathesis(
        fuzz_server, _user(fuzz_server), seed, "--max-examples", str(EXAMPLES), "--exclude-operation-id", "auth_logout"
    )
    assert code == 0, output
    assert "Operations:       17 selected / 18 total" in output, output
    assert "Stateful" in output and "1 covered" in output, output  # register -> log in, through the link
    assert "Traceback" not in fuzz_server.log()


def test_logout_conforms_to_the_document(fuzz_server):
    seed = int(os.environ.get("SCHEMATHESIS_SEED") or random.randrange(2**32))
    print(f"schemathesis seed {seed}: replay with SCHEMATHESIS_SEED={seed}")
    code, output = schemathesis(
        fuzz_server, _user(fuzz_server), seed, "--max-examples", "5", "--include-operation-id", "auth_logout",
        "--phases", "examples,coverage,fuzzing",
    )
    assert code == 0, output
    assert "1 selected" in output, output
