"""The shop's Celery package (``celery -A workers worker``), named like the tasktrail service's
own ``workers`` package, which must never be installed into the shop."""

from workers.celery import app as celery_app

__all__ = ["celery_app"]
