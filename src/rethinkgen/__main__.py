"""``python -m rethinkgen ...``: the same command line as the ``rethinkgen`` script."""

from rethinkgen.cli import main

main()
