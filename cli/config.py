"""Where `ess` finds the API and its key: ESS_API_URL and ESS_API_KEY first (CI, scripts), else
the login that `ess login` stored in the user's config directory, readable by the user only."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import typer

APP = "ess"


@dataclass
class Login:
    url: str
    key: str


def config_file() -> Path:
    # typer (click) follows XDG_CONFIG_HOME on Linux and the platform's own place elsewhere
    return Path(typer.get_app_dir(APP)) / "config.json"


def save(login: Login) -> Path:
    path = config_file()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # created 0600 before anything is written: the key is never readable by others, not even briefly
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as out:
        json.dump({"api_url": login.url, "api_key": login.key}, out)
    os.chmod(path, 0o600)  # a file from an older login may have had other bits
    return path


def stored() -> dict:
    path = config_file()
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except ValueError:
        return {}


def current() -> Login | None:
    saved = stored()
    url = os.environ.get("ESS_API_URL") or saved.get("api_url")
    key = os.environ.get("ESS_API_KEY") or saved.get("api_key")
    return Login(url, key) if url and key else None
