"""API tokens expire and can be revoked. Tokens made before this have no expiry: they are given
TASKTRAIL_API_TOKEN_DAYS (90 by default) from the migration, so none lives forever."""

import datetime as dt
from typing import Any

from django.conf import settings
from django.db import migrations, models
from django.utils import timezone


def give_existing_tokens_an_expiry(apps: Any, schema_editor: Any) -> None:
    api_token = apps.get_model("dashboard", "ApiToken")
    days = int(getattr(settings, "TASKTRAIL_API_TOKEN_DAYS", 90))
    api_token.objects.filter(expires_at__isnull=True).update(
        expires_at=timezone.now() + dt.timedelta(days=days)
    )


class Migration(migrations.Migration):
    dependencies = [
        ("dashboard", "0012_task_identity_conflicts"),
    ]

    operations = [
        migrations.AddField(
            model_name="apitoken",
            name="expires_at",
            field=models.DateTimeField(null=True, help_text="Refused from this time on."),
        ),
        migrations.RunPython(give_existing_tokens_an_expiry, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="apitoken",
            name="expires_at",
            field=models.DateTimeField(help_text="Refused from this time on."),
        ),
        migrations.AddField(
            model_name="apitoken",
            name="revoked_at",
            field=models.DateTimeField(
                blank=True, help_text="Refused from this time on; set by a revoke.", null=True
            ),
        ),
    ]
