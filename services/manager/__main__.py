"""`python -m services.manager`: the REST API and the provisioner in one process.

`python -m services.manager render ...` prints a cluster's Kubernetes manifests instead.
"""

from __future__ import annotations

import sys

import uvicorn

from libs.common.logging import configure_logging
from services.manager.app import create_app
from services.manager.settings import ManagerSettings


def main() -> None:
    if sys.argv[1:2] == ["render"]:
        from services.manager.render import main as render

        sys.exit(render(sys.argv[2:]))
    settings = ManagerSettings()
    configure_logging(settings.log_format, settings.log_level)
    uvicorn.run(create_app(settings), host=settings.api_host, port=settings.api_port,
                log_config=None, access_log=False, timeout_graceful_shutdown=5)


if __name__ == "__main__":
    main()
