"""`python -m agen` is the `agen` command."""

from agen.cli import main

main()
