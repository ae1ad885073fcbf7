"""Queues get permissions of their own: pause_queue (pause and resume) and purge_queue (delete
the waiting messages, admins only), in place of the model's add/change/delete permissions.

The roles' groups receive them after ``migrate`` (dashboard.roles.ensure_roles, on post_migrate,
after auth has created the permissions); nothing to copy here."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("dashboard", "0014_identity_conflict_clear"),
    ]

    operations = [
        migrations.AlterModelOptions(
            name="queuepause",
            options={
                "permissions": [
                    ("pause_queue", "Can pause and resume a queue"),
                    ("purge_queue", "Can purge a queue"),
                ]
            },
        ),
    ]
