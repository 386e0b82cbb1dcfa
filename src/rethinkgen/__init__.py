"""rethinkgen: the randomization tests and theory of Zhang et al., "Understanding deep learning requires
rethinking generalization" (ICLR 2017), as a library and a command-line tool.

    >>> import rethinkgen
    >>> summary = rethinkgen.train(data="mnist1d", corruption="random_labels")  # doctest: +SKIP
    >>> summary["train_acc"], summary["test_acc"]                                # doctest: +SKIP
"""

from rethinkgen.train.config import TrainConfig, run_key
from rethinkgen.train.loop import train as _train

__version__ = "0.1.0"

# ``rethinkgen.train`` is also the name of the trainer's subpackage; the function wins as the attribute
# (the subpackage is still importable as ``rethinkgen.train.loop`` etc. through sys.modules).
train = _train

__all__ = ["TrainConfig", "run_key", "train", "__version__"]
