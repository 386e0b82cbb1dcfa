"""Benchmark: the cost of every generalization measure on a CIFAR-10-sized network, on the CPU.

The data is synthetic CIFAR-10 (random pixels in the official format, see ``_bench.py``) read through
the ``cifar10`` source with its default preprocessing (centre crop 28×28, per-image standardization):
50,000 training images of 3×28×28. The network has its initial weights, the labels are set to its own
predictions, and its last layer is scaled (the predictions do not change) so that the 10% quantile of
its training margins is 1 logit: it "fits" its training set with a trained network's confidence, so the
PAC-Bayes searches run every bisection step (with random labels on an unfitted network, or with an
initial network's margins of a few hundredths, they stop at an end of the bracket after one or two
evaluations and the timing would flatter them). Sharpness, PAC-Bayes flatness and
the input gradient use the seeded ``--subset`` (2,048 by default); the margin measures use all 50,000.

Printed: seconds per measure (a measure's time includes the shared work it is the first to need: the
margins, the folded network) and, as the ratio measured in the same process, the time of one
evaluation pass of the network over the whole training set (what the trainer does after every epoch).

    python benchmarks/measures_cost.py                          # alexnet_small, 2 threads
    python benchmarks/measures_cost.py --model mlp_1x512
"""

from __future__ import annotations

import argparse

import torch
from _bench import Clock, fake_cifar10, load, machine, table

from rethinkgen.measures import list_measures
from rethinkgen.measures.compute import compute_measures
from rethinkgen.measures.context import MeasureContext, MeasureSettings
from rethinkgen.measures.layers import initial_model
from rethinkgen.train.config import TrainConfig
from rethinkgen.train.data import prepare_data
from rethinkgen.train.resolve import resolve_config


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="alexnet_small")
    ap.add_argument("--subset", type=int, default=2048)
    ap.add_argument("--n-train", type=int, default=None, help="training images (default: all 50,000)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--measures", default="all", help="comma-separated names (default: all)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    cpu = torch.device("cpu")
    config = resolve_config(TrainConfig(data="cifar10", data_dir=str(fake_cifar10()), model=a.model,
                                        n_train=a.n_train, device="cpu"))
    print(f"machine: {machine()}")
    print(f"before: {load()}")
    data = prepare_data(config, cpu)
    model = initial_model(a.model, data.input_shape, 10, seed=1, layout=data.layout).eval()
    init = initial_model(a.model, data.input_shape, 10, seed=0, layout=data.layout)
    with Clock() as evaluation, torch.inference_mode():  # the baseline: one pass over the training set
        logits = torch.cat([model(data.x_train[i:i + 256]) for i in range(0, data.n_train, 256)])
    labels = logits.argmax(1)
    top2 = logits.topk(2, dim=1).values
    scale = 1.0 / float(torch.quantile(top2[:, 0] - top2[:, 1], 0.1))  # margins of the own-label fit
    head = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        head.weight.mul_(scale)
        head.bias.mul_(scale)
    print(f"{a.model} on synthetic CIFAR-10: {data.n_train:,} training images {tuple(data.input_shape)}, "
          f"subset {a.subset:,}; one evaluation pass over the training set: {evaluation.wall:.1f} s; last layer "
          f"scaled x{scale:.3g}", flush=True)
    ctx = MeasureContext(model, init, data.x_train, labels, seed=0, settings=MeasureSettings(subset=a.subset))
    names = list_measures() if a.measures == "all" else a.measures.split(",")
    with Clock() as total:
        results = compute_measures(names, ctx)
    rows = [[r.name, f"{r.seconds:.1f}", f"{r.seconds / evaluation.wall:.2f}x",
             "error: " + r.error if r.error else f"{r.value:.4g}"] for r in results]
    rows.append(["all", f"{total.wall:.1f}", f"{total.wall / evaluation.wall:.2f}x", f"cpu {total.cpu:.1f} s"])
    print(table(rows, ["measure", "wall s", "x eval pass", "value"]))
    print(f"after: {load()}")


if __name__ == "__main__":
    main()
