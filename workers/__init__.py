"""Celery worker processes: the app, its schedule, signals and the per-process event loop."""
