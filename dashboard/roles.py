"""The three roles as groups: viewer (read), operator (retry, cancel, acknowledge incidents, pause
and resume queues), admin (also terminate, bulk, purge queues, clear a task's identity conflict).

Kept in step after every ``migrate`` (post_migrate), so a new permission reaches its roles.
"""

from __future__ import annotations

from typing import Any, Final

VIEW: Final = ["view_taskrun", "view_taskattempt", "view_operatoraction"]
# Queues (dashboard.services_queues): pause and resume, operators; purge (delete the waiting
# messages), admins only.
OPERATE: Final = [
    *VIEW, "retry_taskrun", "cancel_taskrun", "acknowledge_alertincident", "pause_queue",
]  # fmt: skip
ROLES: Final[dict[str, list[str]]] = {
    "viewer": VIEW,
    "operator": [*OPERATE],
    "admin": [
        *OPERATE,
        "terminate_taskrun",
        "bulk_over_cap",
        "view_retention",
        "purge_queue",
        "clear_identity_conflict",
    ],
}


def ensure_roles(**_: Any) -> None:
    from django.contrib.auth.models import Group, Permission

    for name, codenames in ROLES.items():
        group, _created = Group.objects.get_or_create(name=name)
        group.permissions.set(
            Permission.objects.filter(content_type__app_label="dashboard", codename__in=codenames)
        )
