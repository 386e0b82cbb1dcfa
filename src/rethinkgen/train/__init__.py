"""The trainer (``rethinkgen.train.loop``), its config, data preparation, metrics and schedule.

The package itself is callable: ``rethinkgen.train(...)`` is :func:`rethinkgen.train.loop.train`, while
``rethinkgen.train.loop``, ``rethinkgen.train.config`` ... stay ordinary submodules.
"""

from __future__ import annotations

import sys
import types


class _CallableModule(types.ModuleType):
    def __call__(self, *args, **kwargs):
        from rethinkgen.train.loop import train

        return train(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
