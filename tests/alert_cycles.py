"""What a monitor's alert threads do, run one after the other in the test's own thread."""

from __future__ import annotations

from dataclasses import dataclass

from dashboard.alerts.runner import CheckRunner, CycleReport, MailRunner


@dataclass
class Alerts:
    """One check cycle, then one mail cycle (the two alert threads of ``manage.py monitor``)."""

    check: CheckRunner
    mail: MailRunner

    def run_once(self) -> CycleReport:
        report = self.check.run_once()
        self.mail.run_once()
        return report
