"""The probe library stays light: `import landscape` loads none of the paper toolchain or the sweep engine."""

import subprocess
import sys

PAPER_AND_SWEEP = (
    "landscape.paper", "dask", "distributed", "matplotlib", "pandas", "seaborn", "statsmodels", "sklearn",
    "myst_nb", "papermill", "jupytext",
)  # fmt: skip


def test_import_landscape_loads_no_paper_toolchain():
    code = f"import sys, landscape\nprint(' '.join(m for m in {PAPER_AND_SWEEP!r} if m in sys.modules))\n"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.split() == []
