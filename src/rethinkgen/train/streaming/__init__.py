"""Training from files that do not fit in memory (ImageNet, Table 2), on one or several processes.

See :mod:`rethinkgen.train.streaming.select` for which runs take this path.
"""
