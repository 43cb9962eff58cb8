"""`python -m services.reporting`."""

from libs.common.service import run_service

if __name__ == "__main__":
    run_service("reporting", lambda settings: settings.reporting_port)
