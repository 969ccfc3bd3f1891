"""`python -m accrue_cli`: the `accrue` command, for child processes started by path."""

from accrue_cli.commands import main

main()
