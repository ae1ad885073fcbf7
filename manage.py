#!/usr/bin/env python
"""Django's command-line utility for tasktrail in a clone (``tasktrail`` once installed)."""

import sys


def main() -> None:
    from dashboard.cli import prepare_environment, run_django

    prepare_environment(sys.argv)
    run_django(sys.argv)


if __name__ == "__main__":
    main()
