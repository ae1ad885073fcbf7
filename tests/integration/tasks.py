"""Tasks only the integration tests use (the worker imports them with ``--include``)."""

from __future__ import annotations

import time

from celery import shared_task


@shared_task(tasktrail_input_id="ref")
def explode(ref: str, message: str) -> None:
    raise RuntimeError(message)


# ignore_result: django-celery-results itself cannot store this message (it raises
# UnicodeEncodeError and Celery reports that error instead); the recorder must cope either way.
@shared_task(tasktrail_input_id="ref", ignore_result=True)
def explode_bytes(ref: str) -> None:
    # Undecodable bytes, as a driver that decodes with surrogateescape would surface them.
    raise ValueError(b"bad bytes: \xff\xfe\x00 end".decode("utf-8", "surrogateescape"))


@shared_task(tasktrail_input_id="ref")
def nap(ref: str, seconds: float) -> str:
    time.sleep(seconds)
    return ref
