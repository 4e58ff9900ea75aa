"""Where the command line keeps its logins: `tokens.json` in the user's config directory, one entry per
server, readable by the user alone."""
from __future__ import annotations

import json
import os
from pathlib import Path

import platformdirs

from .tokens import Tokens


def config_dir() -> Path:
    """`EMOTION_CONFIG_DIR` if set, else the platform's config directory for `emotion`."""
    override = os.environ.get("EMOTION_CONFIG_DIR")
    return Path(override) if override else Path(platformdirs.user_config_dir("emotion"))


class TokenStore:
    """Tokens per server URL in one JSON file (mode 0600, directory 0700)."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or config_dir() / "tokens.json"

    def _read(self) -> dict[str, dict[str, str]]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        servers = data.get("servers") if isinstance(data, dict) else None
        return servers if isinstance(servers, dict) else {}

    def load(self, server: str) -> Tokens | None:
        """The tokens kept for `server`, or None."""
        entry = self._read().get(_key(server))
        try:
            return Tokens.from_json(entry) if entry else None
        except (KeyError, TypeError):
            return None

    def save(self, server: str, tokens: Tokens | None) -> None:
        """Keep `tokens` for `server` (None forgets them)."""
        servers = self._read()
        if tokens is None:
            servers.pop(_key(server), None)
        else:
            servers[_key(server)] = tokens.to_json()
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        temporary = self.path.with_name(self.path.name + ".tmp")
        # Created with 0600 from the start: the tokens are never readable by others, not even briefly.
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump({"servers": servers}, handle, indent=2)
        os.chmod(temporary, 0o600)
        os.replace(temporary, self.path)


def _key(server: str) -> str:
    return server.rstrip("/")
