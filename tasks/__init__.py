"""Celery task definitions: thin wrappers that open a unit of work and call one service."""
