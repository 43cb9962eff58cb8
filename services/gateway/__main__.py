"""`python -m services.gateway`: the data plane tenants' clients talk to."""

import uvloop
from aiohttp import web

from libs.common.logging import configure_logging
from services.gateway.app import create_app
from services.gateway.settings import GatewaySettings


def main() -> None:
    settings = GatewaySettings()
    configure_logging(settings.log_format, settings.log_level)
    # on SIGTERM: stop listening, let in-flight and held requests finish (a wake takes up to
    # wake_timeout_s), then close NATS
    web.run_app(create_app(settings), host=settings.gateway_host, port=settings.gateway_port, access_log=None,
                shutdown_timeout=settings.wake_timeout_s + 5, print=None, loop=uvloop.new_event_loop())


if __name__ == "__main__":
    main()
