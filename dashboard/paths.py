"""Where tasktrail keeps its files: a clone's own folders, or per-user folders once installed.

A clone (``manage.py`` beside the ``dashboard`` package) keeps data in ``var/`` and reads
``templates/`` and ``static/`` at its top. An installed wheel keeps data in
``$XDG_DATA_HOME/tasktrail`` (``~/.local/share/tasktrail``), never inside site-packages, and
reads the templates and static files bundled inside the ``dashboard`` package. Imports no Django.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
BASE_DIR = PACKAGE_DIR.parent
DATA_DIR_VARIABLE = "TASKTRAIL_DATA_DIR"
# The older name, still honoured.
DATA_DIR_ALIAS = "TASKTRAIL_VAR_DIR"


def is_clone(base_dir: Path = BASE_DIR) -> bool:
    return (base_dir / "manage.py").is_file() and (base_dir / "dashboard").is_dir()


def data_dir(
    env: Mapping[str, str] = os.environ,
    base_dir: Path = BASE_DIR,
    home: Path | None = None,
) -> Path:
    """``TASKTRAIL_DATA_DIR`` (or ``TASKTRAIL_VAR_DIR``); else ``var/`` in a clone; else the user's
    data folder (XDG base directories: a relative ``XDG_DATA_HOME`` is ignored)."""
    explicit = env.get(DATA_DIR_VARIABLE) or env.get(DATA_DIR_ALIAS)
    if explicit:
        return Path(explicit).expanduser()
    if is_clone(base_dir):
        return base_dir / "var"
    xdg = env.get("XDG_DATA_HOME", "")
    if xdg and Path(xdg).is_absolute():
        return Path(xdg) / "tasktrail"
    return (home or Path.home()) / ".local" / "share" / "tasktrail"


def resource_dir(name: str, base_dir: Path = BASE_DIR, package_dir: Path = PACKAGE_DIR) -> Path:
    """``templates`` or ``static``: the clone's top-level folder, else the copy in the wheel."""
    if is_clone(base_dir):
        return base_dir / name
    return package_dir / "bundled" / name
