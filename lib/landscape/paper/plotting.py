"""Figure conventions of the paper: one style, and figures saved as `<figures_dir>/<notebook>_<what>.png`."""

from __future__ import annotations

import re
from pathlib import Path

__all__ = [
    "COLUMN_PX",
    "FIGURE_DPI",
    "MAX_WIDTH_IN",
    "MIN_TYPE_PX",
    "apply_style",
    "legibility",
    "save_figure",
]

FIGURE_DPI = 150
MAX_WIDTH_IN = 12.5  # wider figures shrink below readable type at the page width
COLUMN_PX = 1056  # the paper's text column in CSS pixels (66rem, paper/_static/paper.css)
MIN_TYPE_PX = 10.0  # the smallest text a figure may show at the column width, in CSS pixels
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


def legibility(fig) -> list[str]:
    """What keeps `fig` from being read at the paper's column width: each visible text smaller than
    `MIN_TYPE_PX` CSS pixels once the saved image is scaled to `COLUMN_PX`, or reaching outside the figure (a
    clipped label). An empty list when every text is legible.

    The saved image is ``width × FIGURE_DPI`` pixels wide and shown at most `COLUMN_PX` wide, so a text of
    ``s`` points appears ``s / 72 × FIGURE_DPI × min(1, COLUMN_PX / (width × FIGURE_DPI))`` pixels tall.
    """
    from matplotlib.text import Text

    fig.draw_without_rendering()
    width_px = fig.get_size_inches()[0] * FIGURE_DPI
    scale = FIGURE_DPI / 72 * min(1.0, COLUMN_PX / width_px)
    problems = []
    for text in fig.findobj(Text):
        shown = text.get_fontsize() * scale
        if text.get_visible() and text.get_text().strip() and shown < MIN_TYPE_PX:
            problems.append(f"{text.get_text()!r} at {text.get_fontsize():g} pt shows {shown:.1f} px "
                            f"(at least {MIN_TYPE_PX:g} px)")  # fmt: skip
    drawn, frame = fig.get_tightbbox(fig.canvas.get_renderer()), fig.bbox_inches  # both in inches
    slack = 1 / FIGURE_DPI  # one pixel of the saved image
    if (drawn.x0 < frame.x0 - slack or drawn.y0 < frame.y0 - slack or drawn.x1 > frame.x1 + slack
            or drawn.y1 > frame.y1 + slack):  # fmt: skip
        problems.append(f"text or artists reach outside the figure (clipped): they span x {drawn.x0:.2f} to "
                        f"{drawn.x1:.2f} in, y {drawn.y0:.2f} to {drawn.y1:.2f} in, in a {frame.width:g} × "
                        f"{frame.height:g} in figure")  # fmt: skip
    return problems


def save_figure(fig, figures_dir: Path | str, name: str, notebook: str) -> Path:
    """Save `fig` as `<figures_dir>/<name>.png`; `name` must start with `<notebook>_` (a figure is made by one
    notebook and named after it). A figure wider than `MAX_WIDTH_IN`, or with text that `legibility` finds too
    small or clipped, is refused. PNG metadata omits the software version so files are reproducible."""
    if not name.startswith(f"{notebook}_") or not _NAME.match(name):
        raise ValueError(f"figure name {name!r} must look like '{notebook}_<what>' (lower case, digits, '_')")
    width = fig.get_size_inches()[0]
    if width > MAX_WIDTH_IN:
        raise ValueError(f"figure {name!r} is {width:.1f} in wide; at most {MAX_WIDTH_IN} in stays readable at the "
                         "page width (use more rows)")  # fmt: skip
    problems = legibility(fig)
    if problems:
        raise ValueError(f"figure {name!r} is not legible at the page width: " + "; ".join(problems[:6]))
    folder = Path(figures_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    fig.savefig(path, dpi=FIGURE_DPI, metadata={"Software": None})
    return path
