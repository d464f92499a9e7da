"""One module per ``fastopt`` subcommand (see :mod:`fastopt.cli`)."""
