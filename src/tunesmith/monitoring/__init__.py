"""Watching the platform in production: drift in what users ask for, and the metrics that show it."""
