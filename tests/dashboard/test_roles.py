"""The roles' permissions for queues: purging is a permission of its own (admins), pausing and
resuming another (operators and admins), and an install upgraded with ``migrate`` gets them."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, Permission, User
from django.core.management import call_command

from dashboard.services_queues import queue_purge
from dashboard.services_queues import queue_resume as resume_service

pytestmark = pytest.mark.django_db

QUEUE = "isolated"  # cleaned by the redis_client fixture


def codenames(role: str) -> set[str]:
    group = Group.objects.get(name=role)
    return set(group.permissions.values_list("codename", flat=True))


def test_purge_and_pause_are_permissions_of_their_own():
    purge = Permission.objects.get(content_type__app_label="dashboard", codename="purge_queue")
    pause = Permission.objects.get(content_type__app_label="dashboard", codename="pause_queue")
    assert (purge.name, pause.name) == ("Can purge a queue", "Can pause and resume a queue")
    assert {"pause_queue", "purge_queue"} <= codenames("admin")
    assert "pause_queue" in codenames("operator") and "purge_queue" not in codenames("operator")
    assert not {"pause_queue", "purge_queue"} & codenames("viewer")
    # the model's own permissions are not what the roles grant
    for role in ("viewer", "operator", "admin"):
        assert not {"add_queuepause", "change_queuepause", "delete_queuepause"} & codenames(role)


def test_the_models_delete_permission_does_not_purge(redis_client):
    """Someone given "Can delete queue pause" in the admin may not purge a queue for it."""
    user = User.objects.create_user("deleter")
    user.user_permissions.add(
        *Permission.objects.filter(
            content_type__app_label="dashboard",
            codename__in=["view_taskrun", "delete_queuepause", "change_queuepause"],
        )
    )
    user = User.objects.get(pk=user.pk)
    redis_client.lpush(QUEUE, "m1")
    refused = queue_purge(user=user, queue=QUEUE, confirm_name=QUEUE, reason="clean up")
    assert not refused.permitted and redis_client.llen(QUEUE) == 1
    assert not resume_service(user=user, queue=QUEUE, reason="go").permitted


def test_an_installation_upgraded_by_migrate_gives_its_roles_the_new_permissions():
    """As before 0014: no pause_queue/purge_queue permission rows, the roles holding the model's
    add/change/delete permissions. ``migrate`` (nothing left to apply) brings the roles in step."""
    Permission.objects.filter(
        content_type__app_label="dashboard", codename__in=["pause_queue", "purge_queue"]
    ).delete()
    old = {
        "operator": ["add_queuepause", "change_queuepause"],
        "admin": ["add_queuepause", "change_queuepause", "delete_queuepause"],
    }
    for role, names in old.items():
        Group.objects.get(name=role).permissions.add(
            *Permission.objects.filter(content_type__app_label="dashboard", codename__in=names)
        )
    assert not {"pause_queue", "purge_queue"} & codenames("admin")
    admin = User.objects.create_user("upgraded-admin")
    admin.groups.add(Group.objects.get(name="admin"))

    call_command("migrate", verbosity=0, interactive=False)

    assert {"pause_queue", "purge_queue"} <= codenames("admin")
    assert "delete_queuepause" not in codenames("admin")
    assert "pause_queue" in codenames("operator") and "purge_queue" not in codenames("operator")
    assert User.objects.get(pk=admin.pk).has_perm("dashboard.purge_queue")
