"""``python -m scheduler`` runs the ``wfsched`` command line."""

from scheduler import cli

raise SystemExit(cli.main())
