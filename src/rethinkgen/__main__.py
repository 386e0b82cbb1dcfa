"""``python -m rethinkgen ...`` (and ``torchrun ... -m rethinkgen train ...``): the same command line as
the ``rethinkgen`` script."""

from rethinkgen.cli import main

if __name__ == "__main__":  # (importing this module, e.g. to collect doctests, runs nothing)
    main()
