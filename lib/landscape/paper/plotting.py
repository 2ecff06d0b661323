"""Figure conventions of the paper: one style, and figures saved as `<figures_dir>/<notebook>_<what>.png`."""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["FIGURE_DPI", "MAX_WIDTH_IN", "apply_style", "save_figure"]

FIGURE_DPI = 150
MAX_WIDTH_IN = 12.5  # wider figures shrink below readable type at the page width
_NAME = re.compile(r"^[a-z0-9]+(_[a-z0-9]+)+$")


def apply_style() -> None:
    """Matplotlib settings shared by every notebook (inline display and saved files alike): type sizes chosen for
    figures up to `MAX_WIDTH_IN` wide shown at the paper's text width (about 850 px), one colour map."""
    import matplotlib as mpl

    mpl.rcParams.update({
        "figure.dpi": 100, "savefig.dpi": FIGURE_DPI, "font.size": 11, "axes.titlesize": 11,
        "axes.labelsize": 11, "legend.fontsize": 9, "xtick.labelsize": 10, "ytick.labelsize": 10,
        "image.cmap": "viridis", "axes.grid": True, "grid.alpha": 0.3,
        "axes.spines.top": False, "axes.spines.right": False, "figure.constrained_layout.use": True,
    })  # fmt: skip


def save_figure(fig, figures_dir: Path | str, name: str, notebook: str) -> Path:
    """Save `fig` as `<figures_dir>/<name>.png`; `name` must start with `<notebook>_` (a figure is made by one
    notebook and named after it). PNG metadata omits the software version so files are reproducible."""
    if not name.startswith(f"{notebook}_") or not _NAME.match(name):
        raise ValueError(f"figure name {name!r} must look like '{notebook}_<what>' (lower case, digits, '_')")
    width = fig.get_size_inches()[0]
    if width > MAX_WIDTH_IN:
        raise ValueError(f"figure {name!r} is {width:.1f} in wide; at most {MAX_WIDTH_IN} in stays readable at the "
                         "page width (use more rows)")  # fmt: skip
    folder = Path(figures_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    fig.savefig(path, dpi=FIGURE_DPI, metadata={"Software": None})
    return path
