"""Run the fernd command line with ``python -m fernd``."""

from fernd.cli import main

raise SystemExit(main())
