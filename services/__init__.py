"""The es-serverless services: manager, shard controller, reporting."""
