"""Stuck queues and stuck tasks: rules (pure), checks (figures), incidents, mail.

The checks run inside ``manage.py monitor`` (a stuck queue cannot run its own alarm); see
``dashboard.alerts.runner``.
"""
