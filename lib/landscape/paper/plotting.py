"""Figure conventions of the paper: one style, and figures saved as `<figures_dir>/<notebook>_<what>.png`."""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["FIGURE_DPI", "apply_style", "save_figure"]

FIGURE_DPI = 150
_NAME = re.compile(r"^[a-z0-9]+(_[a-z0-9]+)+$")


def apply_style() -> None:
    """Matplotlib settings shared by every notebook (inline display and saved files alike)."""
    import matplotlib as mpl

    mpl.rcParams.update({
        "figure.dpi": 100, "savefig.dpi": FIGURE_DPI, "font.size": 10, "axes.titlesize": 10,
        "axes.labelsize": 10, "legend.fontsize": 8, "axes.grid": True, "grid.alpha": 0.3,
        "axes.spines.top": False, "axes.spines.right": False, "figure.constrained_layout.use": True,
    })  # fmt: skip


def save_figure(fig, figures_dir: Path | str, name: str, notebook: str) -> Path:
    """Save `fig` as `<figures_dir>/<name>.png`; `name` must start with `<notebook>_` (a figure is made by one
    notebook and named after it). PNG metadata omits the software version so files are reproducible."""
    if not name.startswith(f"{notebook}_") or not _NAME.match(name):
        raise ValueError(f"figure name {name!r} must look like '{notebook}_<what>' (lower case, digits, '_')")
    folder = Path(figures_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    fig.savefig(path, dpi=FIGURE_DPI, metadata={"Software": None})
    return path
