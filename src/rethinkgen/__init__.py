"""rethinkgen: the randomization tests and theory of Zhang et al., "Understanding deep learning requires
rethinking generalization" (ICLR 2017), as a library and a command-line tool.

    >>> import rethinkgen
    >>> summary = rethinkgen.train(data="mnist1d", corruption="random_labels")  # doctest: +SKIP
    >>> summary["train_acc"], summary["test_acc"]                                # doctest: +SKIP
"""

from rethinkgen import train  # a callable package: rethinkgen.train(...) runs rethinkgen.train.loop.train
from rethinkgen.train.config import TrainConfig, run_key

__version__ = "0.1.0"

__all__ = ["TrainConfig", "run_key", "train", "__version__"]
