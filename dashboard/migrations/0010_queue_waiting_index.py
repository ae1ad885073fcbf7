from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("dashboard", "0009_workers_and_queue_pauses"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="taskrun",
            index=models.Index(
                condition=models.Q(("state", "PENDING")),
                fields=["queue", "published_at"],
                name="taskrun_queue_waiting",
            ),
        ),
    ]
