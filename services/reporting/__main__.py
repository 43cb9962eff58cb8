"""`python -m services.reporting`: polls ready clusters, publishes metrics and usage, serves /metrics."""

from libs.common.logging import configure_logging
from libs.common.service import serve
from services.reporting.app import create_app
from services.reporting.settings import ReportingSettings


def main() -> None:
    settings = ReportingSettings()
    configure_logging(settings.log_format, settings.log_level)
    serve(create_app(settings), settings, settings.reporting_port)


if __name__ == "__main__":
    main()
