"""Audit a pinned requirements file with pip-audit; fail on any known vulnerability.

pip-audit asks PyPI's vulnerability service for each pinned version. Where that service cannot be
reached, every package comes back "skipped": that is reported in one clear line rather than passed
off as a clean audit.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def main(lock: str) -> int:
    command = [
        str(Path(sys.executable).with_name("pip-audit")),
        "--progress-spinner=off",
        "--disable-pip",
        "--no-deps",
        "--format=json",
        "--requirement",
        lock,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    try:
        report = json.loads(done.stdout)
    except json.JSONDecodeError:
        print(done.stdout + done.stderr, file=sys.stderr)
        print(f"audit: pip-audit failed ({done.returncode}) without a report", file=sys.stderr)
        return 1
    packages = report.get("dependencies", [])
    skipped = [p for p in packages if "skip_reason" in p]
    vulnerable = [p for p in packages if p.get("vulns")]
    for package in vulnerable:
        for vuln in package["vulns"]:
            fixed = ", ".join(vuln.get("fix_versions") or []) or "no fixed version"
            print(f"audit: {package['name']} {package['version']}: {vuln['id']} (fixed in {fixed})")
    audited = len(packages) - len(skipped)
    if vulnerable:
        print(f"audit: {len(vulnerable)} of {audited} audited packages have known vulnerabilities")
        return 1
    if packages and not audited:
        print(
            f"audit: NOT AUDITED: the vulnerability service could not be reached for any of the "
            f"{len(packages)} packages in {lock} ({skipped[0]['skip_reason']})"
        )
        return 0
    note = f"; {len(skipped)} skipped" if skipped else ""
    print(f"audit: {audited} packages in {lock}, no known vulnerabilities{note}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "requirements.lock"))
