"""The reproducible paper pipeline: Jupytext notebooks → papermill → figures → Sphinx/MyST-NB HTML.

    python -m landscape.paper.pipeline [--profile smoke|paper|full] [--only NAME] [--dry-run] [--force]
    python -m landscape.paper.pipeline --paper-only [--profile P]      (HTML from already executed notebooks)

For every `notebooks/<name>.py` (Jupytext py:percent) the pipeline

1. converts it to a notebook (``build/<profile>/notebooks/_source/<name>.ipynb``),
2. executes it with papermill, injecting ``profile``, ``figures_dir`` and ``results_dir`` (paths relative to
   the repository root, the kernel's working directory), into ``build/<profile>/notebooks/<name>.ipynb``,
3. checks that every figure it wrote is named after it (``<name>_*.png``).

Figures go to ``figures/`` (committed) for the ``paper`` profile and to ``build/<profile>/figures/`` otherwise,
so a smoke run never overwrites the committed figures. Raw results go to ``build/<profile>/results/<name>/``.

After executing, the pipeline writes ``build/<profile>/manifest.json``: every glued value, a SHA-256 of each
figure and results table, each notebook's wall time, and the environment (CPU, torch and BLAS versions, thread
settings). `compare_manifests` tells whether two builds computed the same numbers (timings excluded).

Then the paper is built: ``paper/`` and the executed notebooks are staged into ``build/<profile>/paper_src/``
and Sphinx (MyST-NB, execution off, warnings as errors) writes ``build/<profile>/html/``.

Re-runs are cheap: a notebook is executed again only when its source, the profile, its parameters, the library
(``lib/landscape``) or the benchmark tables (``benchmarks/results/*.md|json``) changed, or when one of its
figures is missing (``--force`` executes everything).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from landscape.paper.glue import MISSING

__all__ = [
    "PROFILES",
    "Pipeline",
    "Profile",
    "claims_markdown",
    "compare_manifests",
    "environment",
    "glued_values",
    "main",
    "reproducibility_markdown",
]

ROOT = Path(__file__).resolve().parents[3]


@dataclass(frozen=True)
class Profile:
    """A named size setting shared by every notebook (each notebook derives its own sizes from the name)."""

    name: str
    description: str
    figures_in_repo: bool
    cell_timeout_s: int


PROFILES: dict[str, Profile] = {
    "smoke": Profile("smoke", "tiny sizes: every notebook in CI, all together in a few minutes", False, 600),
    "paper": Profile(
        "paper", "the paper's results on a 2-core CPU (default; figures/ is regenerated)", True, 3600
    ),
    "full": Profile(
        "full", "GPU or cluster: CIFAR-10 from a local folder, full-width models", False, 24 * 3600
    ),
}


def log(message: str) -> None:
    print(f"[pipeline] {message}", flush=True)


class PipelineError(RuntimeError):
    """A step of the pipeline failed; the message names the notebook and the step."""


class Pipeline:
    """Paths and steps of one profile. `root` is the repository (holds `notebooks/` and `paper/`)."""

    def __init__(
        self, profile: str = "paper", root: Path | str = ROOT, build_dir: Path | str | None = None
    ) -> None:
        if profile not in PROFILES:
            raise ValueError(f"unknown profile {profile!r}; expected one of {sorted(PROFILES)}")
        self.profile = PROFILES[profile]
        self.root = Path(root).resolve()
        for folder in ("notebooks", "paper"):
            if not (self.root / folder).is_dir():
                raise FileNotFoundError(
                    f"{self.root} has no {folder}/ folder: not the landscape repository root"
                )
        self.notebooks_dir = self.root / "notebooks"
        self.paper_dir = self.root / "paper"
        self.build_dir = self.root / "build" / profile if build_dir is None else Path(build_dir).resolve()
        self.executed_dir = self.build_dir / "notebooks"
        self.source_dir = self.executed_dir / "_source"
        self.results_root = self.build_dir / "results"
        self.figures_dir = (
            self.root / "figures"
            if self.profile.figures_in_repo and build_dir is None
            else self.build_dir / "figures"
        )
        self.stage_dir = self.build_dir / "paper_src"
        self.html_dir = self.build_dir / "html"
        self.doctree_dir = self.build_dir / "doctrees"

    # --------------------------------------------------------------------------------------------------------
    # Notebooks

    def notebooks(self) -> list[str]:
        """Notebook names (file stems of `notebooks/*.py`), validation first, then alphabetical."""
        names = sorted(p.stem for p in self.notebooks_dir.glob("*.py") if not p.name.startswith("_"))
        return sorted(names, key=lambda n: (n != "validation", n))

    def select(self, only: Sequence[str] | None) -> list[str]:
        available = self.notebooks()
        if not only:
            return available
        unknown = [n for n in only if n not in available]
        if unknown:
            raise ValueError(f"unknown notebook(s) {unknown}; notebooks/ has {available}")
        return [n for n in available if n in only]

    def parameters(self, name: str) -> dict[str, str]:
        """What papermill injects (paths relative to the repository root, the kernel's working directory)."""
        return {
            "profile": self.profile.name,
            "figures_dir": self._relative(self.figures_dir),
            "results_dir": self._relative(self.results_root / name),
        }

    def _relative(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix() if path.is_relative_to(self.root) else path.as_posix()

    def fingerprint(self, name: str) -> str:
        """Hash of everything an execution depends on: source, profile, parameters, library, benchmark
        results."""
        digest = hashlib.sha256()
        digest.update(
            json.dumps({"profile": self.profile.name, "parameters": self.parameters(name)}).encode()
        )
        inputs = [self.notebooks_dir / f"{name}.py"]
        inputs += sorted((self.root / "lib" / "landscape").rglob("*.py"))
        bench = self.root / "benchmarks" / "results"
        if bench.is_dir():
            inputs += sorted(p for p in bench.rglob("*") if p.suffix in {".md", ".json"})
        for path in inputs:
            digest.update(path.relative_to(self.root).as_posix().encode())
            digest.update(path.read_bytes())
        return digest.hexdigest()

    def _manifest_path(self, name: str) -> Path:
        return self.executed_dir / f"{name}.manifest.json"

    def is_current(self, name: str) -> bool:
        """Whether the executed notebook and its figures are up to date (nothing it depends on changed)."""
        manifest_path = self._manifest_path(name)
        if not (manifest_path.exists() and (self.executed_dir / f"{name}.ipynb").exists()):
            return False
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("fingerprint") != self.fingerprint(name):
            return False
        return all((self.root / f).exists() for f in manifest.get("figures", []))

    def execute(self, name: str, force: bool = False) -> float:
        """Convert and execute one notebook; returns the seconds spent (0 when the cached result is
        current)."""
        import jupytext
        import nbformat
        import papermill

        if not force and self.is_current(name):
            log(f"{name}: up to date, not executed again (use --force to re-run)")
            return 0.0
        start = time.perf_counter()
        # what this execution runs, hashed before it starts: an edit made while it runs leaves it out of date
        fingerprint = self.fingerprint(name)
        log(f"{name}: convert notebooks/{name}.py (Jupytext py:percent) -> notebook")
        notebook = jupytext.read(self.notebooks_dir / f"{name}.py")
        if not any("parameters" in c.get("metadata", {}).get("tags", []) for c in notebook.cells):
            raise PipelineError(f"notebooks/{name}.py has no cell tagged 'parameters' (papermill needs one)")
        notebook.metadata["kernelspec"] = {
            "name": "python3",
            "display_name": "Python 3",
            "language": "python",
        }
        self.source_dir.mkdir(parents=True, exist_ok=True)
        source = self.source_dir / f"{name}.ipynb"
        nbformat.write(notebook, source)

        self.figures_dir.mkdir(parents=True, exist_ok=True)
        for stale in self.figures_dir.glob(f"{name}_*"):
            stale.unlink()
        before = _snapshot(self.figures_dir)
        results_dir = self.results_root / name
        results_dir.mkdir(parents=True, exist_ok=True)
        output = self.executed_dir / f"{name}.ipynb"
        parameters = self.parameters(name)
        log(f"{name}: execute with papermill, profile={self.profile.name}, parameters {parameters}")
        try:
            papermill.execute_notebook(
                str(source),
                str(output),
                parameters=parameters,
                kernel_name="python3",
                cwd=str(self.root),
                progress_bar=sys.stderr.isatty(),
                execution_timeout=self.profile.cell_timeout_s,
            )
        except Exception as err:  # papermill raises PapermillExecutionError with the failing cell
            self._manifest_path(name).unlink(missing_ok=True)
            raise PipelineError(
                f"{name}: execution failed (executed notebook kept at {output}):\n{err}"
            ) from err

        after = _snapshot(self.figures_dir)
        written = sorted(f for f, stamp in after.items() if before.get(f) != stamp)
        misnamed = [f for f in written if not f.startswith(f"{name}_")]
        if misnamed:
            raise PipelineError(
                f"{name}: wrote figures not named after the notebook ({name}_*): {misnamed}; "
                "each figure is made by exactly one notebook and named after it"
            )
        self._hide_injected_parameters(output)
        seconds = time.perf_counter() - start
        figures = [self._relative(self.figures_dir / f) for f in written]
        manifest = {"fingerprint": fingerprint, "seconds": round(seconds, 2), "figures": figures}
        self._manifest_path(name).write_text(json.dumps(manifest, indent=2) + "\n")
        log(f"{name}: done in {seconds:.1f} s; figures: {', '.join(figures) or 'none'}")
        return seconds

    @staticmethod
    def _hide_injected_parameters(path: Path) -> None:
        """Keep papermill's injected-parameters cell out of the HTML paper (it stays in the notebook)."""
        import nbformat

        notebook = nbformat.read(path, as_version=4)
        for cell in notebook.cells:
            tags = cell.get("metadata", {}).get("tags", [])
            if "injected-parameters" in tags and "remove-cell" not in tags:
                cell.metadata["tags"] = [*tags, "remove-cell"]
        nbformat.write(notebook, path)

    # --------------------------------------------------------------------------------------------------------
    # Manifest

    @property
    def manifest_path(self) -> Path:
        return self.build_dir / "manifest.json"

    def manifest(self, names: Sequence[str] | None = None) -> dict:
        """What a build produced, to compare two builds value by value: every glued value of every executed
        notebook, a SHA-256 of each figure and of each results table (timing columns dropped), the seconds each
        notebook took, and the environment (`environment()`)."""
        names = self.notebooks() if names is None else list(names)
        notebooks = {}
        for name in names:
            executed = self.executed_dir / f"{name}.ipynb"
            if not executed.exists():
                continue
            own = self._manifest_path(name)
            record = json.loads(own.read_text()) if own.exists() else {}
            glued, timings = {}, {}
            for key, value in glued_values(executed).items():
                (timings if is_timing_key(key) else glued)[key] = value
            cache = self.results_root / name / "cache"
            keys = sorted(p.stem for p in cache.glob("*.json")) if cache.is_dir() else []
            notebooks[name] = {
                "seconds": record.get("seconds"),
                "fingerprint": record.get("fingerprint"),
                "cache": {
                    "entries": len(keys),
                    "keys_sha256": hashlib.sha256("\n".join(keys).encode()).hexdigest(),
                },
                "glued": glued,
                "timings": timings,
            }
        figures = {
            p.name: _file_digest(p)
            for p in sorted(self.figures_dir.glob("*.png"))
            if any(p.name.startswith(f"{n}_") for n in names)
        }
        results = {
            p.relative_to(self.results_root).as_posix(): table_digest(p)
            if p.suffix == ".csv"
            else _file_digest(p)
            for p in sorted(self.results_root.rglob("*"))
            if p.suffix in RESULT_SUFFIXES and "cache" not in p.relative_to(self.results_root).parts
        }
        return {
            "profile": self.profile.name,
            "environment": environment(),
            "notebooks": notebooks,
            "figures": figures,
            "results": results,
        }

    def write_manifest(self, names: Sequence[str] | None = None) -> Path:
        """Write `manifest()` to ``build/<profile>/manifest.json`` (atomically) and return its path."""
        self.manifest_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.manifest_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.manifest(names), indent=1, sort_keys=True) + "\n")
        tmp.replace(self.manifest_path)
        log(f"manifest: {self._relative(self.manifest_path)}")
        return self.manifest_path

    # --------------------------------------------------------------------------------------------------------
    # Paper

    def sphinx_command(self) -> list[str]:
        return [
            sys.executable, "-m", "sphinx", "-W", "--keep-going", "-E", "-q", "-b", "html",
            "-d", str(self.doctree_dir), str(self.stage_dir), str(self.html_dir),
        ]  # fmt: skip

    def stage_paper(self) -> None:
        """Copy `paper/` and the executed notebooks (as `notebooks/<name>.ipynb`) into the staging folder."""
        missing = [n for n in self.notebooks() if not (self.executed_dir / f"{n}.ipynb").exists()]
        if missing:
            raise PipelineError(
                f"no executed notebook for {missing} in {self._relative(self.executed_dir)}; run "
                f"`nox -s reproduce -- --profile {self.profile.name}` (or python -m landscape.paper.pipeline) first"
            )
        if self.stage_dir.exists():
            shutil.rmtree(self.stage_dir)
        shutil.copytree(
            self.paper_dir, self.stage_dir, ignore=shutil.ignore_patterns("_build", "__pycache__")
        )
        target = self.stage_dir / "notebooks"
        target.mkdir(exist_ok=True)
        for name in self.notebooks():
            shutil.copy2(self.executed_dir / f"{name}.ipynb", target / f"{name}.ipynb")
            # the chapter's results tables, linked from its pages for download (`landscape.paper.tables`)
            for table in sorted((self.results_root / name).glob("*.csv")):
                (self.stage_dir / "results" / name).mkdir(parents=True, exist_ok=True)
                shutil.copy2(table, self.stage_dir / "results" / name / table.name)
        manifest = (
            json.loads(self.manifest_path.read_text()) if self.manifest_path.exists() else self.manifest()
        )
        generated = self.stage_dir / "_generated"
        generated.mkdir(exist_ok=True)
        (generated / "claims.md").write_text(claims_markdown(manifest["notebooks"], self.notebooks()))
        (self.stage_dir / "reproducibility.md").write_text(
            reproducibility_markdown(manifest, self.profile.name)
        )

    def build_paper(self) -> float:
        start = time.perf_counter()
        log(f"paper: stage paper/ and {len(self.notebooks())} executed notebook(s) into "
            f"{self._relative(self.stage_dir)}")  # fmt: skip
        self.stage_paper()
        log(f"paper: sphinx-build -W (MyST-NB, execution off) -> {self._relative(self.html_dir)}")
        result = subprocess.run(self.sphinx_command(), cwd=self.root, check=False)
        if result.returncode != 0:
            raise PipelineError(
                f"paper: sphinx-build failed (exit {result.returncode}); see the messages above"
            )
        seconds = time.perf_counter() - start
        log(f"paper: done in {seconds:.1f} s; open {self._relative(self.html_dir / 'index.html')}")
        return seconds

    # --------------------------------------------------------------------------------------------------------

    def describe(self, names: Sequence[str], force: bool, build_paper: bool, execute: bool = True) -> None:
        """Print what a run would do (the --dry-run output)."""
        log(f"profile {self.profile.name}: {self.profile.description}")
        log(f"figures -> {self._relative(self.figures_dir)}/, executed notebooks -> "
            f"{self._relative(self.executed_dir)}/")  # fmt: skip
        if execute:
            for name in names:
                state = "would execute" if force or not self.is_current(name) else "up to date (cached)"
                log(f"{name}: {state}: notebooks/{name}.py with parameters {self.parameters(name)}")
        if build_paper:
            log(f"paper: would run {' '.join(self.sphinx_command())}")

    def run(
        self,
        only: Sequence[str] | None = None,
        *,
        dry_run: bool = False,
        force: bool = False,
        build_paper: bool = True,
        execute: bool = True,
    ) -> dict[str, float]:
        """Execute the selected notebooks, then build the paper; returns seconds per step."""
        names = self.select(only)
        if dry_run:
            self.describe(names, force, build_paper, execute)
            return {}
        timings: dict[str, float] = {}
        if execute:
            for i, name in enumerate(names, 1):
                log(f"[{i}/{len(names)}] notebook {name} (profile {self.profile.name})")
                timings[name] = self.execute(name, force=force)
            self.write_manifest()
        if build_paper:
            timings["paper"] = self.build_paper()
        return timings


# Glued values that measure time, not results: kept in the manifest, left out of build comparisons.
_TIMING_KEY = re.compile(r"(^|[_\s-])(runtime|minutes|seconds|wall|timings?)([_\s-]|$)", re.IGNORECASE)
# Columns of results tables that hold timings (the same rule for column names).
_GLUE_PREFIX = "application/papermill.record/"


# Raw results compared between builds (JSON is left out: it may hold timings, e.g. copied benchmark tables).
RESULT_SUFFIXES = (".csv", ".npy", ".npz")


def is_timing_key(key: str) -> bool:
    """Whether a glued key or a table column holds a duration (e.g. ``runtime_minutes``, ``wall_time``)."""
    return bool(_TIMING_KEY.search(key))


def glued_values(notebook_path: Path) -> dict[str, str]:
    """{key: value} of every ``myst_nb.glue`` call in an executed notebook: the text of a value, the SHA-256 of
    an image (a glued figure)."""
    import nbformat

    notebook = nbformat.read(notebook_path, as_version=4)
    values = {}
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            name = output.get("metadata", {}).get("scrapbook", {}).get("name")
            if name is None:
                continue
            data = {k.removeprefix(_GLUE_PREFIX): v for k, v in output.get("data", {}).items()}
            if "image/png" in data:
                values[name] = "sha256:" + hashlib.sha256(data["image/png"].encode()).hexdigest()
            else:
                values[name] = data.get("text/plain", "")
    return values


def claims_markdown(notebooks: dict, order: Sequence[str]) -> str:
    """The landing page's claims dashboard from the chapters' glued claims (`landscape.paper.claims`), in the
    order of the chapters."""
    import ast

    from landscape.paper.claims import CLAIMS_KEY, dashboard_markdown

    records = []
    for name in order:
        text = notebooks.get(name, {}).get("glued", {}).get(CLAIMS_KEY)
        if text is not None:
            records += json.loads(ast.literal_eval(text))  # glued as a JSON string; text/plain holds its repr
    return dashboard_markdown(records)


def reproducibility_markdown(manifest: dict, profile: str) -> str:
    """The reproducibility appendix from a build's manifest: software, hardware, threads, wall time and cache
    keys per chapter, and the commands that rerun the paper or one chapter."""
    env = manifest.get("environment", {})
    variables = {k: v for k, v in env.get("variables", {}).items() if v is not None}
    commit = env.get("git_commit") or "–"
    changed = env.get("git_changed")
    state = "unknown" if changed is None else ("none" if not changed else ", ".join(f"`{c}`" for c in changed[:8])
                                               + (f" and {len(changed) - 8} more" if len(changed) > 8 else ""))  # fmt: skip
    total = sum(r.get("seconds") or 0 for r in manifest.get("notebooks", {}).values()) / 60
    rows = []
    for name, record in manifest.get("notebooks", {}).items():
        seconds = record.get("seconds")
        minutes = MISSING if seconds is None else f"{seconds / 60:.1f}"
        cache = record.get("cache", {})
        fingerprint = (record.get("fingerprint") or "–")[:16]
        rows.append(f"| `{name}` | {minutes} | `{fingerprint}` | {cache.get('entries', 0)} | "
                    f"`{(cache.get('keys_sha256') or '–')[:16]}` |")  # fmt: skip
    blas = ", ".join(env.get("torch_blas", [])) or "–"
    threads = ", ".join(f"`{k}={v}`" for k, v in variables.items()) or "none set"
    return "\n".join([
        "# Reproducibility",
        "",
        (f"This page is generated from the build's manifest (`build/{profile}/manifest.json`) when the paper is "
        "built; it describes the run that produced the numbers in this copy of the paper."),
        "",
        "## Software and hardware",
        "",
        ":::{table} The run behind this copy of the paper.",
        ":name: tbl-reproducibility-environment",
        "",
        "| item | value |", "|:--|:--|",
        f"| profile | `{profile}`: {PROFILES[profile].description} |" if profile in PROFILES else f"| profile | `{profile}` |",
        f"| code | commit `{commit[:12]}`; tracked files changed at build time: {state} |",
        f"| CPU | {env.get('cpu', '–')} ({env.get('cores', '–')} cores) |",
        f"| platform | {env.get('platform', '–')} |",
        f"| Python | {env.get('python', '–')} |",
        f"| torch | {env.get('torch', '–')} ({blas}) |",
        f"| NumPy | {env.get('numpy', '–')} |",
        f"| torch threads (kernel default) | {env.get('torch_threads_default', '–')} |",
        f"| thread and sweep settings | {threads} |",
        f"| data | MNIST-1D generated offline by `mnist1d` {env.get('mnist1d') or '–'} (seeds fixed per chapter) |",
        ":::",
        "",
        "Every other package is pinned in `requirements/lock.txt`, which the README's commands install.",
        "",
        "## Chapters",
        "",
        ("Wall time of each chapter's last execution; its cache key (the SHA-256 of its source, the profile, its "
        "parameters and the library, first 16 hex digits: a chapter is executed again only when it changes); and "
        "the cached measurements it read or wrote (each keyed by its settings and the code it runs), with a "
        "SHA-256 of their sorted keys."),
        "",
        (f":::{{table}} Chapters of this build: {total:.1f} minutes of execution in all (each chapter's last "
         "execution; 0 where it was up to date and read back)."),
        ":name: tbl-reproducibility-chapters",
        "",
        "| chapter | minutes | cache key | cached results | their keys |",
        "|:--|--:|:--|--:|:--|",
        *rows,
        ":::",
        "",
        (f"The manifest itself (`build/{profile}/manifest.json`) holds every glued value and the SHA-256 of every "
         "figure and results table, so two builds can be compared value by value."),
        "",
        "## Rerunning",
        "",
        ("Everything (notebooks, figures, this paper): `nox -s reproduce` (add `-- --profile smoke` for the small "
        "profile). One chapter, then the paper:"),
        "",
        "```bash",
        f".venv/bin/python -m landscape.paper.pipeline --profile {profile} --only rq1_sgd_flat_minima",
        "```",
        "",
        ("`--force` executes a chapter although nothing changed; `--no-paper` skips the HTML; `--paper-only` "
        "rebuilds the HTML from executed notebooks. Two builds are compared number by number with "
        "`landscape.paper.pipeline.compare_manifests`. Each chapter's notebook can be downloaded from its page "
        "(the download button), and every results table from the link under it."),
        "",
    ])  # fmt: skip


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def table_digest(path: Path) -> str:
    """SHA-256 of a results file's numbers: a CSV table without its timing columns (`is_timing_key`), so two
    builds that computed the same numbers in different times compare equal; the arrays of a ``.npy``/``.npz``
    file (not the archive's bytes, which carry the time it was written)."""
    import numpy as np
    import pandas as pd

    if path.suffix in (".npy", ".npz"):
        digest = hashlib.sha256()
        loaded = np.load(path, allow_pickle=False)
        arrays = dict(loaded.items()) if path.suffix == ".npz" else {"": loaded}
        if path.suffix == ".npz":
            loaded.close()
        for name, array in sorted(arrays.items()):
            digest.update(f"{name}:{array.dtype}:{array.shape}".encode())
            digest.update(np.ascontiguousarray(array).tobytes())
        return digest.hexdigest()

    try:
        frame = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        return _file_digest(path)
    frame = frame.drop(columns=[c for c in frame.columns if is_timing_key(str(c))])
    return hashlib.sha256(frame.to_csv(index=False).encode()).hexdigest()


def environment() -> dict:
    """The machine and software a build ran on: CPU model and cores, Python, torch and its BLAS, NumPy,
    thread settings (torch's default and the environment variables that set it), the sweep settings."""
    import os
    import platform

    import numpy
    import torch

    cpu = platform.processor() or ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                    if line.startswith("model name")), cpu)  # fmt: skip
    config = torch.__config__.show()
    blas = sorted({m.group(0) for m in re.finditer(r"BLAS_INFO=\w+|LAPACK_INFO=\w+|USE_MKL=\w+", config)})
    variables = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OPENBLAS_CORETYPE",
                 "LANDSCAPE_WORKERS", "LANDSCAPE_THREADS", "DASK_SCHEDULER_ADDRESS")  # fmt: skip
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "torch_blas": blas,
        "numpy": numpy.__version__,
        "torch_threads_default": torch.get_num_threads(),  # a kernel's, before a chapter or task sets its own
        "variables": {v: os.environ.get(v) for v in variables},
        "mnist1d": _version("mnist1d"),
        "sphinx_book_theme": _version("sphinx-book-theme"),
        **_git_state(ROOT),
    }


def _version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


def _git_state(root: Path) -> dict:
    """The commit a build ran from and the tracked files that differed from it (None outside a git checkout)."""

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=True)
        except (OSError, subprocess.CalledProcessError):
            return None
        return out.stdout.rstrip("\n")  # keep the leading blank of `status --porcelain`'s first line

    changed = git("status", "--porcelain", "--untracked-files=no")
    return {"git_commit": git("rev-parse", "HEAD"),
            "git_changed": None if changed is None else [line[3:] for line in changed.splitlines()]}  # fmt: skip


def compare_manifests(first: dict, second: dict) -> list[str]:
    """The differences between two build manifests in what they computed (glued values, figures, results
    tables), ignoring timings and the environment; an empty list means the builds agree bit for bit."""
    differences = []
    for section in ("figures", "results"):
        a, b = first.get(section, {}), second.get(section, {})
        differences += [
            f"{section}/{k}: {a.get(k)} != {b.get(k)}"
            for k in sorted(set(a) | set(b))
            if a.get(k) != b.get(k)
        ]
    notebooks_a, notebooks_b = first.get("notebooks", {}), second.get("notebooks", {})
    for name in sorted(set(notebooks_a) | set(notebooks_b)):
        a = notebooks_a.get(name, {}).get("glued", {})
        b = notebooks_b.get(name, {}).get("glued", {})
        differences += [f"{name}::{k}: {a.get(k)!r} != {b.get(k)!r}" for k in sorted(set(a) | set(b))
                        if a.get(k) != b.get(k)]  # fmt: skip
    return differences


def _snapshot(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in folder.iterdir() if p.is_file()} if folder.is_dir() else {}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m landscape.paper.pipeline",
        description="Execute every notebook in notebooks/ (papermill), regenerate figures, build the paper.",
    )
    parser.add_argument("--profile", choices=sorted(PROFILES), default="paper",
                        help="size profile injected into every notebook (default: paper)")  # fmt: skip
    parser.add_argument("--only", action="append", metavar="NAME",
                        help="execute only this notebook (repeatable); the paper is still built")  # fmt: skip
    parser.add_argument("--dry-run", action="store_true", help="print what would run, run nothing")
    parser.add_argument("--force", action="store_true", help="execute notebooks even when up to date")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--paper-only", action="store_true",
                       help="only build the HTML paper from already executed notebooks")  # fmt: skip
    group.add_argument("--no-paper", action="store_true", help="execute notebooks, skip the paper")
    parser.add_argument("--build-dir", type=Path, default=None,
                        help="build into this folder instead of build/<profile> (figures too), e.g. to compare "
                             "two builds with compare_manifests")  # fmt: skip
    parser.add_argument("--root", type=Path, default=ROOT, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    pipeline = Pipeline(args.profile, root=args.root, build_dir=args.build_dir)
    start = time.perf_counter()
    try:
        timings = pipeline.run(
            args.only,
            dry_run=args.dry_run,
            force=args.force,
            build_paper=not args.no_paper,
            execute=not args.paper_only,
        )
    except (PipelineError, ValueError) as err:
        log(f"FAILED: {err}")
        return 1
    if not args.dry_run:
        steps = ", ".join(f"{k} {v:.1f} s" for k, v in timings.items())
        log(f"profile {args.profile} finished in {time.perf_counter() - start:.1f} s ({steps})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
