"""Task runner for landscape.

Every session runs in the interpreter that runs nox (the project's `.venv`, set up by the README command), so torch
(about 6 GB) is installed once per machine, never once per session. The package itself is installed in editable
mode the first time a session needs it and never again.

    nox -s tests                         unit tests and smoke-profile notebooks
    nox -s lint                          ruff
    nox -s bench                         speed and accuracy against peer tools (peers installed only here)
    nox -s reproduce [-- --profile P]    every notebook, figures/, then the paper
    nox -s paper                         the HTML paper from already executed notebooks
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nox

ROOT = Path(__file__).resolve().parent
PYTHON = sys.executable
nox.options.default_venv_backend = "none"
nox.options.sessions = ["lint", "tests"]


def ensure_project(session: nox.Session) -> None:
    """Install `landscape` (editable, no dependencies) unless this interpreter already imports it from lib/."""
    spec = importlib.util.find_spec("landscape")
    if spec is not None and spec.origin and Path(spec.origin).resolve().is_relative_to(ROOT / "lib"):
        return
    session.run(PYTHON, "-m", "pip", "install", "--quiet", "--no-deps", "-e", str(ROOT))


# The paper tests open the built HTML in a real headless browser (playwright driving Debian's chromium).
CHROMIUM = Path("/usr/bin/chromium")
BROWSER_HINT = (
    f"the paper tests need Debian's chromium at {CHROMIUM}: run `sudo apt-get update && sudo apt-get install -y "
    "chromium`, then this command again"
)


def _apt_prefix() -> list[str] | None:
    """How this user may run apt-get: directly as root, through passwordless sudo, or not at all (None)."""
    if shutil.which("apt-get") is None:
        return None
    if os.geteuid() == 0:
        return []
    sudo = shutil.which("sudo") and subprocess.run(["sudo", "-n", "true"], check=False, capture_output=True)
    if sudo and sudo.returncode == 0:
        return ["sudo", "-n"]
    return None


def ensure_browser(session: nox.Session) -> None:
    """Install Debian's chromium with apt-get when it is missing and this user may (root or passwordless sudo);
    otherwise stop before anything runs, with the one command that installs it."""
    if CHROMIUM.exists():
        return
    prefix = _apt_prefix()
    if prefix is None:
        session.error(BROWSER_HINT)
    session.log(f"{CHROMIUM} is missing: installing Debian's chromium with apt-get (once per machine)")
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    session.run(*prefix, "apt-get", "update", "-qq", external=True, env=env)
    session.run(*prefix, "apt-get", "install", "-y", "-qq", "chromium", external=True,
                env=env)  # fmt: skip
    if not CHROMIUM.exists():
        session.error(f"apt-get ran but {CHROMIUM} is still missing; {BROWSER_HINT}")


@nox.session
def tests(session: nox.Session) -> None:
    """Run the unit tests (pytest arguments may follow `--`); installs the browser of the paper tests first when
    it is missing (`ensure_browser`)."""
    ensure_browser(session)
    ensure_project(session)
    session.run(PYTHON, "-m", "pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """Check style and common bugs with ruff."""
    session.run(PYTHON, "-m", "ruff", "check", "lib", "tests", "benchmarks", "noxfile.py", "notebooks")
    session.run(PYTHON, "-m", "ruff", "format", "--check", "lib", "tests", "benchmarks", "noxfile.py")


PEERS_DIR = ROOT / ".nox" / "bench-peers"
PEERS = [
    "pyhessian==0.1",
    "hessian-eigenthings==1.0.0a5",
    "curvlinops-for-pytorch==3.0.1",
    "loss-landscapes==3.0.6",
    # curvlinops' own dependencies (installed without theirs, so torch is never pulled in twice)
    "backpack-for-pytorch==1.7.1",
    "einconv==0.1.0",
    "einops==0.8.2",
    "jaxtyping==0.3.11",
    "linear_operator==0.6.1",
    "opt-einsum==3.4.0",
    "unfoldNd==0.2.3",
    "wadler_lindig==0.1.8",
]


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks against peer tools; results go to benchmarks/results/.

    The peers are installed into a folder of this session only (`.nox/bench-peers`, no dependencies, so the
    project's torch is reused) and put on the path of the benchmark processes alone.
    """
    ensure_project(session)
    stamp = PEERS_DIR / "installed.txt"
    if not stamp.exists() or stamp.read_text() != "\n".join(PEERS):
        session.run(
            PYTHON,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--upgrade",
            "--no-deps",
            "--target",
            str(PEERS_DIR),
            *PEERS,
        )
        stamp.write_text("\n".join(PEERS))
    env = {"PYTHONPATH": str(PEERS_DIR)}
    for script in sorted((ROOT / "benchmarks").glob("bench_*.py")):
        session.log(f"benchmark: {script.name}")
        session.run(PYTHON, str(script), *session.posargs, env=env)


@nox.session
def reproduce(session: nox.Session) -> None:
    """Execute every notebook in a profile, regenerate the figures, then build the paper.

    Arguments after `--` go to `python -m landscape.paper.pipeline`: `--profile smoke|paper|full` (default paper),
    `--only NAME`, `--dry-run`, `--force`.
    """
    ensure_project(session)
    session.run(PYTHON, "-m", "landscape.paper.pipeline", *session.posargs)


@nox.session
def paper(session: nox.Session) -> None:
    """Build the HTML paper (Sphinx -W, MyST-NB, no execution) from already executed notebooks.

    Reads build/<profile>/notebooks/ (default profile paper; `-- --profile smoke` for the smoke build) and writes
    build/<profile>/html/.
    """
    ensure_project(session)
    session.run(PYTHON, "-m", "landscape.paper.pipeline", "--paper-only", *session.posargs)
