"""What tasktrail stores: one row per Celery task id, one per execution attempt.

Only the monitor writes these rows (``dashboard.ingest``), by joining events with the rules in
``dashboard.ingest.merge``; the ``*_key`` columns are the ordering keys those rules need and are not
meant for display. Results stay in django-celery-results' ``TaskResult``, joined by task id.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets

from django.conf import settings
from django.db import models
from django.utils import timezone

from dashboard import constants


class TaskState(models.TextChoices):
    PENDING = constants.PENDING, "Pending"
    RECEIVED = constants.RECEIVED, "Received"
    STARTED = constants.STARTED, "Started"
    RETRY = constants.RETRY, "Waiting to retry"
    SUCCESS = constants.SUCCESS, "Succeeded"
    FAILURE = constants.FAILURE, "Failed"
    REVOKED = constants.REVOKED, "Revoked"
    REJECTED = constants.REJECTED, "Rejected"
    LOST = constants.LOST, "Lost (worker gone)"


RETRYABLE_STATES = (TaskState.FAILURE, TaskState.REVOKED, TaskState.REJECTED, TaskState.LOST)
CANCELLABLE_STATES = (TaskState.PENDING, TaskState.RECEIVED, TaskState.RETRY)
TERMINABLE_STATES = (TaskState.STARTED,)


class TaskRun(models.Model):
    task_id = models.CharField("task id", max_length=255, unique=True)
    # null until an event naming them arrives (events can come in any order)
    name = models.CharField("task name", max_length=255, null=True, blank=True)
    queue = models.CharField(max_length=255, null=True, blank=True)
    input_id = models.CharField(
        "input id",
        max_length=255,
        null=True,
        blank=True,
        help_text="The business id the task works on (an order id, a SKU), from its arguments.",
    )
    state = models.CharField(max_length=16, choices=TaskState.choices, default=TaskState.PENDING)
    retries = models.PositiveIntegerField(default=0, help_text="Celery retries so far.")
    exc_type = models.CharField("error type", max_length=255, null=True, blank=True)
    exc_message = models.TextField("error message", null=True, blank=True)

    first_seen_at = models.DateTimeField(help_text="Earliest event recorded for this task.")
    published_at = models.DateTimeField(null=True, blank=True)
    received_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(
        null=True, blank=True, help_text="Start of the latest attempt."
    )
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(help_text="Latest event recorded for this task.")
    worker = models.CharField(max_length=255, null=True, blank=True)
    runtime = models.FloatField(null=True, blank=True, help_text="Seconds, latest attempt.")
    queue_wait = models.FloatField(
        null=True, blank=True, help_text="Seconds between (re)publish or ETA and start."
    )
    eta = models.DateTimeField("ETA", null=True, blank=True)
    expires = models.DateTimeField(null=True, blank=True)

    parent_id = models.CharField(max_length=255, null=True, blank=True)
    root_id = models.CharField(max_length=255, null=True, blank=True)
    group_id = models.CharField(max_length=255, null=True, blank=True)
    trace_id = models.CharField(max_length=32, null=True, blank=True)
    trace_sampled = models.BooleanField(null=True, blank=True)

    args = models.TextField(null=True, blank=True, help_text="Positional arguments as JSON.")
    kwargs = models.TextField(null=True, blank=True, help_text="Keyword arguments as JSON.")
    arg_names = models.TextField(
        null=True, blank=True, help_text="Comma-separated names of the positional parameters."
    )
    args_dropped = models.CharField(
        max_length=255, null=True, blank=True, help_text="Why the arguments were not kept."
    )
    retry_of = models.CharField(
        max_length=255,
        null=True,
        blank=True,
        help_text="Task id this task is an operator retry of.",
    )
    retried_as = models.CharField(
        max_length=255,
        null=True,
        blank=True,
        help_text="Task id of the operator retry of this task.",
    )
    # Set by operator actions (compare-and-swap), never by the monitor.
    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    terminate_requested_at = models.DateTimeField(null=True, blank=True)

    # ordering keys of the merge rules (see dashboard.ingest.merge)
    state_key = models.BigIntegerField(default=constants.NO_KEY)
    worker_key = models.BigIntegerField(default=constants.NO_KEY)
    start_key = models.BigIntegerField(default=constants.NO_KEY)
    error_key = models.BigIntegerField(default=constants.NO_KEY)
    # the first publish fixes the identity; null: no event said (or written before these keys)
    name_key = models.BigIntegerField(null=True, blank=True)
    call_key = models.BigIntegerField(null=True, blank=True)
    # An event that disagreed with the first one (a forgery, a bug, or a task id used twice), or a
    # failure that a SUCCESS outranked: the task is not retried until an admin has looked.
    identity_conflict_key = models.BigIntegerField(null=True, blank=True)
    identity_conflict_field = models.CharField(max_length=32, null=True, blank=True)
    identity_conflict = models.TextField(
        null=True, blank=True, help_text="What the disagreeing event said (cut to 500 characters)."
    )
    times_clamped = models.BooleanField(
        default=False,
        help_text="An event's time was too far from when the monitor received it and was replaced.",
    )
    # which of two errors at the same state wins: the first the monitor received (merge.first_key)
    error_rx = models.BigIntegerField(null=True, blank=True)

    class Meta:
        verbose_name = "task run"
        permissions = [
            ("retry_taskrun", "Can retry failed tasks"),
            ("cancel_taskrun", "Can cancel tasks that have not started"),
            ("terminate_taskrun", "Can terminate running tasks"),
            ("bulk_over_cap", "Can act on more tasks at once than the bulk cap"),
            ("view_retention", "Can see what retention keeps and removes"),
            ("clear_identity_conflict", "Can clear a task's identity conflict after checking it"),
        ]
        indexes = [
            models.Index(fields=["-first_seen_at", "-id"], name="taskrun_recent"),
            models.Index(fields=["state", "-first_seen_at", "-id"], name="taskrun_state_recent"),
            models.Index(fields=["name", "-first_seen_at", "-id"], name="taskrun_name_recent"),
            models.Index(fields=["queue", "-first_seen_at", "-id"], name="taskrun_queue_recent"),
            models.Index(fields=["worker", "-first_seen_at", "-id"], name="taskrun_worker_recent"),
            # pattern ops (PostgreSQL) serve both the exact search and the input-id prefix search
            models.Index(
                fields=["input_id"], name="taskrun_input_id", opclasses=["varchar_pattern_ops"]
            ),
            models.Index(fields=["trace_id"], name="taskrun_trace_id"),
            models.Index(fields=["root_id"], name="taskrun_root_id"),
            models.Index(fields=["parent_id"], name="taskrun_parent_id"),
            models.Index(fields=["retry_of"], name="taskrun_retry_of"),
            models.Index(fields=["finished_at"], name="taskrun_finished_at"),
            # retention picks the oldest finished rows of one state (dashboard.retention.pruner).
            # Partial: the planner prefers them to taskrun_finished_at filtered by state, which
            # walks every failure kept longer before the first success to remove; and a row is
            # added only when its task finishes, not at every event.
            models.Index(
                fields=["finished_at"],
                name="taskrun_success_finished",
                condition=models.Q(state=constants.SUCCESS),
            ),
            models.Index(
                fields=["finished_at"],
                name="taskrun_failed_finished",
                condition=models.Q(
                    state__in=[
                        constants.FAILURE,
                        constants.REVOKED,
                        constants.REJECTED,
                        constants.LOST,
                    ]
                ),
            ),
            # the oldest task still waiting in each queue (dashboard.alerts.queue_figures): only
            # published, not yet received rows, so it stays as small as the backlog
            models.Index(
                fields=["queue", "published_at"],
                name="taskrun_queue_waiting",
                condition=models.Q(state=constants.PENDING),
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(state__in=TaskState.values), name="taskrun_state_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name or '?'}[{self.task_id}] {self.state}"

    @property
    def identity_conflict_at(self) -> dt.datetime | None:
        """When the monitor received the disagreeing event (known for identity conflicts)."""
        key = self.identity_conflict_key
        if key is None or key >= constants.STATE_CONFLICT_BASE:
            return None
        ms = (key >> constants.IDENTITY_HASH_BITS) & ((1 << constants.IDENTITY_MS_BITS) - 1)
        return dt.datetime.fromtimestamp((ms + constants.IDENTITY_EPOCH_MS) / 1000, tz=dt.UTC)

    @property
    def identity_conflict_first(self) -> str:
        """What the row holds for the conflict's field: the first publish's value (or SUCCESS)."""
        field = self.identity_conflict_field
        if field not in ("name", "queue", "args", "kwargs", "state"):
            return ""
        value = getattr(self, field)
        return "" if value is None else str(value)[:500]

    @property
    def is_finished(self) -> bool:
        return self.state in constants.TERMINAL_STATES

    @property
    def can_be_retried(self) -> bool:
        return self.state in RETRYABLE_STATES and not self.retried_as and self.args is not None

    @property
    def can_be_cancelled(self) -> bool:
        return self.state in CANCELLABLE_STATES and not self.cancel_requested_at

    @property
    def can_be_terminated(self) -> bool:
        return self.state in TERMINABLE_STATES and not self.terminate_requested_at


class TaskAttempt(models.Model):
    """One execution attempt of a task id (Celery's own retries reuse the id)."""

    task_id = models.CharField("task id", max_length=255)
    attempt = models.PositiveIntegerField(help_text="0 for the first run, n for the n-th retry.")
    outcome = models.CharField(max_length=16, default=constants.PENDING)
    worker = models.CharField(max_length=255, null=True, blank=True)
    pid = models.IntegerField(null=True, blank=True)
    published_at = models.DateTimeField(null=True, blank=True)
    eta = models.DateTimeField("ETA", null=True, blank=True)
    received_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    runtime = models.FloatField(null=True, blank=True, help_text="Seconds.")
    queue_wait = models.FloatField(null=True, blank=True, help_text="Seconds.")
    exc_type = models.CharField("error type", max_length=255, null=True, blank=True)
    exc_message = models.TextField("error message", null=True, blank=True)
    traceback = models.TextField(null=True, blank=True)
    span_id = models.CharField(max_length=16, null=True, blank=True)

    worker_key = models.BigIntegerField(default=constants.NO_KEY)
    outcome_rank = models.IntegerField(default=0)
    # which of two outcomes of the same rank wins: the first the monitor received (merge.first_key)
    outcome_rx = models.BigIntegerField(null=True, blank=True)

    class Meta:
        verbose_name = "task attempt"
        constraints = [
            models.UniqueConstraint(fields=["task_id", "attempt"], name="taskattempt_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.task_id} attempt {self.attempt}: {self.outcome}"


class ApiToken(models.Model):
    """A bearer token for the read-only JSON API. Only a hash is stored; the token is shown once."""

    PREFIX = "tt_"
    MAX_DAYS = 3650  # the longest life a token can be given

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    name = models.CharField(max_length=100, help_text="What the token is for.")
    key_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(help_text="Refused from this time on.")
    revoked_at = models.DateTimeField(
        null=True, blank=True, help_text="Refused from this time on; set by a revoke."
    )

    class Meta:
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.name} ({self.user})"

    @staticmethod
    def hash(key: str) -> str:
        return hashlib.sha256(key.encode()).hexdigest()

    @classmethod
    def new_key(cls) -> str:
        return cls.PREFIX + secrets.token_urlsafe(32)


class OperatorAction(models.Model):
    """Audit: one row per action a person asked for, allowed or refused, single or bulk."""

    class Kind(models.TextChoices):
        RETRY = "retry", "Retry"
        CANCEL = "cancel", "Cancel"
        TERMINATE = "terminate", "Terminate"
        ACKNOWLEDGE = "acknowledge", "Acknowledge incident"  # no task targets: scope names it
        PAUSE_QUEUE = "pause_queue", "Pause queue"  # no task targets: scope names the queue
        RESUME_QUEUE = "resume_queue", "Resume queue"
        PURGE_QUEUE = "purge_queue", "Purge queue"
        CLEAR_CONFLICT = "clear_conflict", "Clear identity conflict"  # one task target

    class Outcome(models.TextChoices):
        PENDING = "pending", "Pending"  # allowed, the Celery call not yet made
        DONE = "done", "Done"
        PARTIAL = "partial", "Partly done"  # bulk: some targets refused or failed
        REFUSED = "refused", "Refused"
        FAILED = "failed", "Failed"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    username = models.CharField(max_length=150, help_text="Kept if the user is deleted.")
    at = models.DateTimeField(auto_now_add=True, db_index=True)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    bulk = models.BooleanField(default=False)
    scope = models.TextField(blank=True, default="", help_text="Selection or filter, in words.")
    target_count = models.PositiveIntegerField(default=0)
    reason = models.TextField()
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    message = models.TextField(blank=True, default="")

    class Meta:
        verbose_name = "operator action"
        indexes = [
            models.Index(fields=["username", "-at"], name="action_user_recent"),
            models.Index(fields=["kind", "-at"], name="action_kind_recent"),
        ]

    def __str__(self) -> str:
        return f"{self.username} {self.kind} ({self.outcome})"


class OperatorActionTarget(models.Model):
    """One task an action touched, so each task page lists the actions on it."""

    action = models.ForeignKey(OperatorAction, on_delete=models.CASCADE, related_name="targets")
    task_id = models.CharField(max_length=255, db_index=True)
    outcome = models.CharField(max_length=16, choices=OperatorAction.Outcome.choices)
    message = models.TextField(blank=True, default="")
    new_task_id = models.CharField(max_length=255, null=True, blank=True)

    class Meta:
        verbose_name = "operator action target"

    def __str__(self) -> str:
        return f"{self.action_id} {self.task_id} {self.outcome}"


class AlertIncident(models.Model):
    """A stuck condition (``dashboard.alerts``): opened once, reminded, resolved with a mail.

    At most one open incident per (rule, subject) — a partial unique index — so a restarted or a
    second monitor finds the open one instead of opening (and mailing) another. Mail state lives
    here too: ``retry_at`` is both the back-off after a failed send and the lease a monitor takes
    (compare-and-swap) before sending, so two monitors never send the same notice.
    """

    class Rule(models.TextChoices):
        QUEUE_STUCK = constants.QUEUE_STUCK, "Queue stuck"
        TASK_OVERDUE = constants.TASK_OVERDUE, "Task running too long"
        WORKER_LOST = constants.WORKER_LOST, "Worker gone"
        MONITOR_LAG = constants.MONITOR_LAG, "Monitor behind"
        QUEUE_PAUSED = constants.QUEUE_PAUSED, "Queue paused too long"

    rule = models.CharField(max_length=32, choices=Rule.choices)
    subject = models.CharField(
        max_length=255, help_text="The queue, task name or worker it is about; 'monitor'."
    )
    summary = models.CharField(max_length=500, help_text="The figures in words, as mailed.")
    details = models.JSONField(default=dict, blank=True, help_text="Figures of the latest check.")
    opened_at = models.DateTimeField()
    checked_at = models.DateTimeField(help_text="Latest check that found it still open.")
    resolved_at = models.DateTimeField(null=True, blank=True)
    last_notified_at = models.DateTimeField(
        null=True, blank=True, help_text="Latest alert or reminder mail sent."
    )
    reminders_sent = models.PositiveIntegerField(default=0)
    recovery_notified_at = models.DateTimeField(null=True, blank=True)
    notify_attempts = models.PositiveIntegerField(
        default=0, help_text="Failed attempts at the mail now due."
    )
    last_error = models.TextField(blank=True, default="", help_text="Why the last mail failed.")
    retry_at = models.DateTimeField(
        null=True, blank=True, help_text="No mail before this time (back-off, or a send under way)."
    )
    acknowledged_at = models.DateTimeField(
        null=True, blank=True, help_text="When an operator said someone is on it."
    )
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="Who acknowledged it.",
    )
    silenced_until = models.DateTimeField(
        null=True, blank=True, help_text="No reminder mail before this time (acknowledged)."
    )
    acknowledge_note = models.CharField(
        max_length=500,
        blank=True,
        default="",
        help_text="What the operator said when acknowledging.",
    )

    class Meta:
        verbose_name = "alert incident"
        permissions = [
            ("receive_alerts", "Receives alert emails"),
            ("acknowledge_alertincident", "Can acknowledge an incident and silence its reminders"),
        ]
        indexes = [models.Index(fields=["-opened_at", "-id"], name="incident_recent")]
        constraints = [
            models.UniqueConstraint(
                fields=["rule", "subject"],
                condition=models.Q(resolved_at__isnull=True),
                name="incident_one_open",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.headline} ({'open' if self.is_open else 'resolved'})"

    @property
    def is_open(self) -> bool:
        return self.resolved_at is None

    @property
    def headline(self) -> str:
        return constants.headline(self.rule, self.subject)

    @property
    def duration_seconds(self) -> float:
        """How long it has been (or was) open."""
        return ((self.resolved_at or timezone.now()) - self.opened_at).total_seconds()


class UserPreference(models.Model):
    """What one person chose for how pages read: their time zone (empty: the browser's)."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="tasktrail_preference"
    )
    time_zone = models.CharField(
        max_length=64, blank=True, default="", help_text="IANA zone name, e.g. Europe/Paris."
    )

    class Meta:
        verbose_name = "user preference"

    def __str__(self) -> str:
        return f"{self.user} ({self.time_zone or 'browser zone'})"


class RegisteredTask(models.Model):
    """A task name one worker of the shop has registered, as that worker last reported it.

    Written only by the monitor, from the catalog each worker reports when it starts and every few
    minutes after (``tasktrail.catalog``). Retry decides from the recent rows, without importing
    the shop's code.
    """

    hostname = models.CharField(max_length=255, help_text="The worker's node name.")
    name = models.CharField("task name", max_length=255)
    app_name = models.CharField("app", max_length=255, blank=True, default="")
    queue = models.CharField(max_length=255, null=True, blank=True)
    retryable = models.BooleanField(
        default=True, help_text="False when the task sets tasktrail_retryable = False."
    )
    declared_retryable = models.BooleanField(
        default=False, help_text="True when the task sets tasktrail_retryable = True itself."
    )
    arg_names = models.TextField(
        null=True,
        blank=True,
        help_text="Comma-separated names of the positional parameters, from the task's code.",
    )
    max_retries = models.IntegerField(null=True, blank=True, help_text="Empty: no limit.")
    time_limit = models.FloatField(null=True, blank=True)
    soft_time_limit = models.FloatField(null=True, blank=True)
    last_reported_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["hostname", "name"], name="registered_task_host_name")
        ]
        indexes = [
            models.Index(fields=["name", "-last_reported_at"], name="registered_task_recent"),
            models.Index(fields=["last_reported_at"], name="registered_task_reported"),
        ]

    def __str__(self) -> str:
        return f"{self.name} on {self.hostname}"


class Worker(models.Model):
    """One worker of the shop, as its own heartbeats last described it.

    Written only by the monitor, from the heartbeat the client in each worker's main process adds
    to the stream every few seconds (``tasktrail.heartbeat``). A worker that said goodbye is
    offline; one whose heartbeats stopped without a goodbye is gone, and only then are its
    running tasks LOST. A remote-control broadcast left unanswered is never taken as evidence.
    """

    class Status(models.TextChoices):
        ONLINE = "online", "Online"
        OFFLINE = "offline", "Offline (stopped cleanly)"
        GONE = "gone", "Gone (heartbeats stopped)"

    hostname = models.CharField(max_length=255, unique=True, help_text="The worker's node name.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ONLINE)
    app_name = models.CharField("app", max_length=255, blank=True, default="")
    pid = models.IntegerField(null=True, blank=True)
    pool = models.CharField(max_length=64, blank=True, default="")
    concurrency = models.IntegerField(null=True, blank=True)
    queues = models.JSONField(default=list, blank=True, help_text="Queue names it consumes.")
    running = models.JSONField(
        default=list, blank=True, help_text="Task ids running at the last heartbeat (bounded)."
    )
    running_count = models.IntegerField(default=0)
    processed = models.BigIntegerField(default=0, help_text="Tasks finished since it started.")
    failed = models.BigIntegerField(default=0, help_text="Tasks failed since it started.")
    release = models.CharField(
        max_length=255, blank=True, default="", help_text="The shop's TASKTRAIL_APP_VERSION."
    )
    celery_version = models.CharField(max_length=64, blank=True, default="")
    kombu_version = models.CharField(max_length=64, blank=True, default="")
    python_version = models.CharField(max_length=64, blank=True, default="")
    started_at = models.DateTimeField(null=True, blank=True)
    first_seen_at = models.DateTimeField()
    last_heartbeat_at = models.DateTimeField(db_index=True)
    stopped_at = models.DateTimeField(null=True, blank=True, help_text="Its goodbye, if any.")
    gone_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["status", "-last_heartbeat_at"], name="worker_status")]

    def __str__(self) -> str:
        return f"{self.hostname} ({self.status})"


class WorkerCounts(models.Model):
    """A worker's processed and failed counters, one row per heartbeat minute, so the Workers page
    can say how many in the last hour without counting task rows. Pruned after a day."""

    hostname = models.CharField(max_length=255)
    minute = models.DateTimeField()
    processed = models.BigIntegerField(default=0)
    failed = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["hostname", "minute"], name="worker_counts_minute")
        ]
        indexes = [models.Index(fields=["minute"], name="worker_counts_minute_idx")]

    def __str__(self) -> str:
        return f"{self.hostname} at {self.minute:%H:%M}: {self.processed} processed"


class QueuePause(models.Model):
    """A queue an operator paused: every worker stops consuming it, and a worker that starts later
    does not consume it either. Deleted on resume (the audit rows keep the history)."""

    queue = models.CharField(max_length=255, unique=True)
    paused_at = models.DateTimeField()
    paused_by = models.CharField(max_length=150)
    reason = models.TextField()
    action = models.ForeignKey(
        OperatorAction, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        # what the roles grant (dashboard.roles); the model's add/change/delete are not used
        permissions = [
            ("pause_queue", "Can pause and resume a queue"),
            ("purge_queue", "Can purge a queue"),
        ]

    def __str__(self) -> str:
        return f"{self.queue} paused by {self.paused_by}"
