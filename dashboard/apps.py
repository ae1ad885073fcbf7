from django.apps import AppConfig


class DashboardConfig(AppConfig):
    name = "dashboard"
    verbose_name = "tasktrail"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from dashboard.roles import ensure_roles

        # after auth's own post_migrate handler has created the permissions
        post_migrate.connect(ensure_roles, sender=self, dispatch_uid="tasktrail.roles")
        # Load the Celery app (and its recorder) in every Django process, so a task published from
        # a web request is recorded.
        import workers.celery_app  # noqa: F401
