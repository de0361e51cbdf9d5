"""Subcommands of the ``kinn-ref`` command line, one module each."""
