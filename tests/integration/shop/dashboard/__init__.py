"""The shop's own Django app named ``dashboard``: its settings, URLs and commands (the same
top-level name as the tasktrail service's package, which must never be installed into the shop)."""
