"""tasktrail's client: records a Celery app's tasks for the tasktrail dashboard.

The whole integration on a shop's side is one call, anywhere after ``Celery(...)``::

    import tasktrail
    tasktrail.install(app)
"""

from __future__ import annotations

from tasktrail.recorder import flush, install

__all__ = ["flush", "install"]
__version__ = "0.1.0"
