"""The manager's REST API: one module per kind of route, the dependencies they share, the
middleware and the error answers. Routes record desired state and answer at once."""

from __future__ import annotations

from fastapi import FastAPI

from services.manager.http import clusters, control_plane, fleet, platform, snapshots, tenants, vectors
from services.manager.http.console import add_console


def add_routes(app: FastAPI) -> None:
    for module in (platform, clusters, vectors, snapshots):
        app.include_router(module.public if module is platform else module.router)
    app.include_router(tenants.router)
    app.include_router(control_plane.router)
    app.include_router(fleet.router)
    add_console(app)
