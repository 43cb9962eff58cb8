"""structlog set-up: key=value on a terminal, JSON in containers, secrets redacted."""

from __future__ import annotations

import logging
import sys

import structlog

SECRET_KEYS = {"password", "credentials", "authorization", "api_key", "token", "secret"}


def _redact(_logger, _method, event_dict):
    for key in list(event_dict):
        if key.lower() in SECRET_KEYS:
            event_dict[key] = "***"
    return event_dict


def configure_logging(fmt: str = "console", level: str = "INFO") -> None:
    renderer = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    logging.basicConfig(stream=sys.stderr, level=level, format="%(message)s")
    # engine clients log every refused connection with a traceback; a starting engine refuses many
    for noisy in ("opensearch", "elastic_transport", "elasticsearch"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _redact,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
