"""One figure style for the whole report: Agg rendering, Okabe-Ito colours, labelled axes, legends.

Figures are built as ``matplotlib.figure.Figure`` objects with an Agg canvas, never through pyplot, so
the report needs no display and leaves matplotlib's global state (backend, open figures) untouched.
Colours come from the Okabe-Ito palette, which stays distinguishable under the common forms of colour
blindness; every series also gets its own marker and line style, so the figures survive greyscale.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from pathlib import Path

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

# Okabe & Ito (2008), "Color Universal Design"; yellow last (weak contrast on white).
OKABE_ITO = {
    "blue": "#0072B2",
    "orange": "#E69F00",
    "bluish_green": "#009E73",
    "vermillion": "#D55E00",
    "sky_blue": "#56B4E9",
    "reddish_purple": "#CC79A7",
    "black": "#000000",
    "yellow": "#F0E442",
}
PALETTE = tuple(OKABE_ITO.values())
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
LINESTYLES = ("-", "--", "-.", ":", (0, (5, 1)), (0, (3, 1, 1, 1, 1, 1)), (0, (1, 1)), (0, (8, 2)))
NEUTRAL = "#666666"  # reference lines (chance level, paper values)

# Fixed colours for names the paper uses, so a corruption or model has one colour in every figure.
FIXED = {
    "true_labels": OKABE_ITO["blue"],
    "random_labels": OKABE_ITO["vermillion"],
    "shuffled_pixels": OKABE_ITO["bluish_green"],
    "random_pixels": OKABE_ITO["orange"],
    "gaussian": OKABE_ITO["reddish_purple"],
    "inception_small": OKABE_ITO["blue"],
    "inception_small_nobn": OKABE_ITO["sky_blue"],
    "alexnet_small": OKABE_ITO["orange"],
    "mlp_1x512": OKABE_ITO["bluish_green"],
    "mlp_3x512": OKABE_ITO["vermillion"],
    "cnn1d": OKABE_ITO["reddish_purple"],
    "resnet18": OKABE_ITO["black"],
}

RC = {
    "figure.dpi": 100,
    "savefig.dpi": 130,
    "savefig.bbox": "tight",
    "font.size": 10,
    "axes.titlesize": 10.5,
    "axes.labelsize": 10,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.6,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.prop_cycle": matplotlib.cycler(color=list(PALETTE)),
    "legend.fontsize": 8.5,
    "legend.frameon": False,
    "lines.linewidth": 1.7,
    "lines.markersize": 5.5,
    "image.cmap": "cividis",
}


class Styler:
    """Hands out a stable (colour, marker, line style) per series name within one figure.

    Names the paper uses keep their colour from ``FIXED`` across figures; other names take the next
    palette colour not yet used in this figure.
    """

    def __init__(self, names: Iterable[str] = ()) -> None:
        self._index: dict[str, int] = {}
        self._color: dict[str, str] = {}
        for name in names:
            self.color(name)

    def index(self, name: str) -> int:
        if name not in self._index:
            self._index[name] = len(self._index)
        return self._index[name]

    def color(self, name: str) -> str:
        if name not in self._color:
            self.index(name)
            used = set(self._color.values())
            fixed = FIXED.get(name)
            if fixed is not None and fixed not in used:
                self._color[name] = fixed
            else:
                free = [c for c in PALETTE if c not in used]
                self._color[name] = free[0] if free else PALETTE[len(self._color) % len(PALETTE)]
        return self._color[name]

    def marker(self, name: str) -> str:
        return MARKERS[self.index(name) % len(MARKERS)]

    def linestyle(self, name: str):
        return LINESTYLES[self.index(name) % len(LINESTYLES)]

    def kwargs(self, name: str) -> dict:
        return {"color": self.color(name), "marker": self.marker(name), "linestyle": self.linestyle(name)}


@contextlib.contextmanager
def style() -> Iterator[None]:
    """Apply the report's rcParams for the duration of a figure's construction and saving."""
    with matplotlib.rc_context(RC):
        yield


def new_figure(n_panels: int = 1, *, ncols: int | None = None, panel_size=(4.6, 3.4),
               sharey: bool = False) -> tuple[Figure, list]:
    """A Figure with an Agg canvas and ``n_panels`` axes laid out in a grid (at most 3 per row)."""
    n_panels = max(1, n_panels)
    ncols = ncols or min(3, n_panels)
    nrows = -(-n_panels // ncols)
    fig = Figure(figsize=(panel_size[0] * ncols, panel_size[1] * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False, sharey=sharey).ravel().tolist()
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    return fig, axes[:n_panels]


def save(fig: Figure, path: Path) -> Path:
    """Write ``fig`` as PNG (within the report style) and return the path."""
    with style():
        fig.savefig(path, format="png")
    return path
