"""`python -m agen` is the `agen` command."""

from agen.app.cli import main

main()
