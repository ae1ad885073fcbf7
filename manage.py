#!/usr/bin/env python
"""Django's command-line utility for tasktrail in a clone (``tasktrail`` once installed)."""

import sys


def main() -> None:
    from dashboard.cli import NEEDS_STREAM, prepare_environment, require_stream

    prepare_environment(sys.argv)
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    if command in NEEDS_STREAM and not {"-h", "--help"} & set(sys.argv):
        require_stream(command)
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
