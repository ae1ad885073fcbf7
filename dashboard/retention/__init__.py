"""Retention: old task history, audit rows and resolved incidents removed in small batches.

``policy`` turns the settings into cutoffs, ``pruner`` deletes (``prune_pass``), ``lease`` keeps a
second pass from running at once, ``runner`` is what the monitor's thread and ``manage.py prune``
call.
"""
