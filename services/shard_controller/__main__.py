"""`python -m services.shard_controller`: plans and applies shards, replicas and node counts."""

from libs.common.logging import configure_logging
from libs.common.service import serve
from services.shard_controller.app import create_app
from services.shard_controller.settings import ShardControllerSettings


def main() -> None:
    settings = ShardControllerSettings()
    configure_logging(settings.log_format, settings.log_level)
    serve(create_app(settings), settings, settings.shard_controller_port)


if __name__ == "__main__":
    main()
