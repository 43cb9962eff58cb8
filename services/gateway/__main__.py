"""`python -m services.gateway`: the data plane tenants' clients talk to."""

import socket

import structlog
import uvloop
from aiohttp import web

from libs.common.logging import configure_logging
from services.gateway.app import create_app
from services.gateway.pump_link import pump_binary, usable
from services.gateway.settings import GatewaySettings


def main() -> None:
    settings = GatewaySettings()
    configure_logging(settings.log_format, settings.log_level)
    # on SIGTERM: stop listening, let in-flight and held requests finish (a request is held up to
    # hold_max_s), then close NATS
    options = dict(access_log=None, shutdown_timeout=settings.hold_max_s + 5, print=None,
                   loop=uvloop.new_event_loop())
    pump = pump_binary(settings) if settings.gateway_pump else None
    if pump and not usable(pump):
        structlog.get_logger("gateway").warning(
            "the byte pump is not built: Python carries every request (`make setup` builds it with Go)", pump=str(pump))
        pump = None
    if pump is None:
        web.run_app(create_app(settings), host=settings.gateway_host, port=settings.gateway_port, **options)
        return
    # listening before the pump starts: its first requests wait in the backlog, never refused
    internal = socket.create_server(("127.0.0.1", settings.gateway_internal_port), backlog=1024)
    web.run_app(create_app(settings, pump, internal.getsockname()[1]), sock=internal, **options)


if __name__ == "__main__":
    main()
