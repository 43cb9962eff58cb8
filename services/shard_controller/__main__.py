"""`python -m services.shard_controller`."""

from libs.common.service import run_service

if __name__ == "__main__":
    run_service("shard-controller", lambda settings: settings.shard_controller_port)
