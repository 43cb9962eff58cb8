"""Libraries shared by the es-serverless services."""
