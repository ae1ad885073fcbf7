"""Celery side of tasktrail: the recorder (no Django), the app, demo tasks, control."""
