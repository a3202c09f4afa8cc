"""Session and command line: the CLI, one run session, its live display, summary, status, reports and export."""
