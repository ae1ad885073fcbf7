"""The three roles as groups: viewer (read), operator (retry, cancel, acknowledge incidents, pause
and resume queues), admin (also terminate, bulk, purge queues, clear a task's identity conflict).

Kept in step after every ``migrate`` (post_migrate), so a new permission reaches its roles.
"""

from __future__ import annotations

from typing import Any, Final

VIEW: Final = ["view_taskrun", "view_taskattempt", "view_operatoraction"]
# Queue pauses use the model's own permissions: add one (pause), change it (resume), delete
# waiting messages (purge a queue, admins only; dashboard.services_queues).
OPERATE: Final = [
    *VIEW, "retry_taskrun", "cancel_taskrun", "acknowledge_alertincident", "add_queuepause",
    "change_queuepause",
]  # fmt: skip
ROLES: Final[dict[str, list[str]]] = {
    "viewer": VIEW,
    "operator": [*OPERATE],
    "admin": [
        *OPERATE,
        "terminate_taskrun",
        "bulk_over_cap",
        "view_retention",
        "delete_queuepause",
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
