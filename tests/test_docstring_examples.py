"""The ``>>>`` examples in rethinkgen's docstrings run, and print what they say (CPU, milliseconds each).

Every module of the package is imported and searched with ``doctest``; examples marked
``# doctest: +SKIP`` (those that train a whole run) are the only ones not executed. The API reference
of the documentation site shows these same examples, so a docstring that drifts from the code fails here.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import rethinkgen

OPTIONS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def _module_names() -> list[str]:
    names = ["rethinkgen"]
    names += [m.name for m in pkgutil.walk_packages(rethinkgen.__path__, "rethinkgen.")]
    return sorted(names)


def _examples(module) -> list[doctest.DocTest]:
    tests = doctest.DocTestFinder(exclude_empty=True).find(module, module.__name__)
    return [t for t in tests if t.examples]


MODULES_WITH_EXAMPLES = [name for name in _module_names() if _examples(importlib.import_module(name))]


def test_the_key_public_functions_have_examples():
    """The entry points a new user meets first each show a runnable example."""
    documented = set()
    for name in MODULES_WITH_EXAMPLES:
        documented.update(t.name for t in _examples(importlib.import_module(name)))
    for qualname in [
        "rethinkgen.models.create_model",
        "rethinkgen.models.list_models",
        "rethinkgen.data.corruptions.apply_corruption",
        "rethinkgen.train.config.TrainConfig",
        "rethinkgen.train.config.run_key",
    ]:
        assert qualname in documented, f"{qualname} has no >>> example"


@pytest.mark.parametrize("name", MODULES_WITH_EXAMPLES)
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    runner = doctest.DocTestRunner(optionflags=OPTIONS)
    ran = 0
    for test in _examples(module):
        runner.run(test)
        ran += sum(1 for e in test.examples if not e.options.get(doctest.SKIP))
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} docstring example(s) of {name} failed (printed above)"
    if name != "rethinkgen":  # the package docstring's example trains a run: shown, skipped
        assert ran > 0
