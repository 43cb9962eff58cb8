"""Builds the gateway's byte pump (`services/gateway/pump`, Go, standard library only) once per
version of its sources, into the path `pump_link.pump_binary` names; `make setup` calls it."""

from __future__ import annotations

import os
import shutil
import subprocess

from libs.common.settings import GatewaySection
from services.gateway.pump_link import SOURCE, pump_binary, usable


def build_pump(settings: GatewaySection) -> str:
    """What was done, for setup's output; raises CalledProcessError if Go fails to build it."""
    binary = pump_binary(settings)
    if usable(binary):
        return f"gateway byte pump already built: {binary}"
    go = shutil.which("go")
    if go is None:
        return ("gateway byte pump: Go not found, so the Python gateway carries every request itself "
                "(install Go 1.22+ and run `make setup` again for the pump)")
    binary.parent.mkdir(parents=True, exist_ok=True)
    partial = binary.with_suffix(".partial")
    subprocess.run([go, "build", "-trimpath", "-o", str(partial), "."], cwd=SOURCE, check=True,
                   env={**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-mod=mod"})
    os.replace(partial, binary)  # whole or absent: a gateway never starts a half-written binary
    for older in binary.parent.parent.iterdir():  # builds of earlier sources (a running one keeps its file)
        if older != binary.parent and older.is_dir():
            shutil.rmtree(older, ignore_errors=True)
    return f"gateway byte pump built: {binary}"
