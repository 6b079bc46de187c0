"""`python -m shopper` runs the CLI."""

from shopper.cli import main

main()
