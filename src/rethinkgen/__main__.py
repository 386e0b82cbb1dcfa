"""``python -m rethinkgen ...`` (and ``torchrun ... -m rethinkgen train ...``): the command line."""

from rethinkgen.cli import main

if __name__ == "__main__":
    main()
