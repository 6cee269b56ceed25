"""`python -m ods` runs the CLI."""

from ods.cli import main

main()
