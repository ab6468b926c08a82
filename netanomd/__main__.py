"""``python -m netanomd`` runs the command-line interface."""

from netanomd.cli import main

raise SystemExit(main())
