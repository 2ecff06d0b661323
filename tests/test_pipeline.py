"""The paper pipeline end to end in the smoke profile.

One module-scoped fixture executes every notebook in `notebooks/` with papermill (forced: nothing cached) and
builds the paper with Sphinx -W, once per pytest session; the tests then inspect the executed notebooks, the
figures and the HTML, and open every page in a real headless browser (Debian's chromium, driven by
playwright), keeping a screenshot of each under build/smoke/screenshots/.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from pathlib import Path

import nbformat
import pytest

from landscape.paper.pipeline import PROFILES, Pipeline, PipelineError, compare_manifests, is_timing_key, main

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
SMOKE_BUDGET_S = 600  # every notebook together, smoke profile, on a 2-core CPU
CHROMIUM_ARGS = [
    "--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip
# Text that must never reach a reader: unresolved references, raw glue roles, missing-key messages.
UNRESOLVED = re.compile(r"\?\?|\{glue|glue:(text|figure|any|md|math)|not found in glue|No key '|Pending glue")

pytestmark = pytest.mark.slow


def _snapshot(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in folder.glob("*") if p.is_file()} if folder.is_dir() else {}


@contextlib.contextmanager
def _empty_caches(folder: Path):
    """Point the run store at an empty folder for the block (the notebooks' kernels inherit it)."""
    before = os.environ.get("LANDSCAPE_CACHE")
    if folder.exists():
        shutil.rmtree(folder)
    os.environ["LANDSCAPE_CACHE"] = str(folder)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("LANDSCAPE_CACHE", None)
        else:
            os.environ["LANDSCAPE_CACHE"] = before


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """Run the whole smoke pipeline once from empty caches (every notebook executed afresh, then the paper)."""
    pipeline = Pipeline("smoke", root=ROOT)
    committed = _snapshot(ROOT / "figures")
    if pipeline.results_root.exists():
        shutil.rmtree(pipeline.results_root)  # the measurement caches live there
    with _empty_caches(tmp_path_factory.mktemp("first") / "cache"):
        timings = pipeline.run(force=True)
    return {"pipeline": pipeline, "timings": timings, "committed_before": committed}


def test_two_cold_builds_compute_the_same_numbers(smoke, tmp_path):
    """A second smoke build, from empty caches into another folder and with every task on a 2-worker Dask cluster
    instead of in-process, reproduces every glued value, figure and results table of the first bit for bit
    (timings aside): same code, same machine, same numbers, wherever the tasks ran."""
    first = json.loads(smoke["pipeline"].manifest_path.read_text())
    assert first["environment"]["torch"]
    assert first["environment"]["cpu"]
    glued = sum(len(n["glued"]) for n in first["notebooks"].values())
    assert glued > 50, "the manifest holds too few glued values"
    assert first["figures"], "the manifest lists no figure"
    second_build = Pipeline("smoke", root=ROOT, build_dir=tmp_path / "build")
    before = os.environ.get("LANDSCAPE_WORKERS")
    os.environ["LANDSCAPE_WORKERS"] = (
        "2"  # the second build's tasks run on an embedded 2-process Dask cluster
    )
    try:
        with _empty_caches(tmp_path / "cache"):
            second_build.run(force=True, build_paper=False)
    finally:
        if before is None:
            os.environ.pop("LANDSCAPE_WORKERS")
        else:
            os.environ["LANDSCAPE_WORKERS"] = before
    second = json.loads(second_build.manifest_path.read_text())
    assert sorted(second["notebooks"]) == sorted(first["notebooks"])
    assert compare_manifests(first, second) == []


@pytest.fixture(scope="module")
def pages(smoke) -> list[Path]:
    """The paper's HTML pages (index and every chapter), without Sphinx's generated index and search pages."""
    html = smoke["pipeline"].html_dir
    found = sorted(p for p in html.rglob("*.html") if p.name not in {"genindex.html", "search.html"}
                   and "_static" not in p.parts and "_sources" not in p.parts)  # fmt: skip
    assert html / "index.html" in found
    return found


def test_every_notebook_executed_in_smoke_profile(smoke):
    pipeline = smoke["pipeline"]
    names = pipeline.notebooks()
    assert "validation" in names
    for name in names:
        assert smoke["timings"][name] > 0, f"{name} was not executed"
        notebook = nbformat.read(pipeline.executed_dir / f"{name}.ipynb", as_version=4)
        assert notebook.metadata.papermill.parameters["profile"] == "smoke"
        assert not notebook.metadata.papermill.get("exception"), f"{name} raised"
        injected = [c for c in notebook.cells if "injected-parameters" in c.metadata.get("tags", [])]
        assert len(injected) == 1
        assert 'profile = "smoke"' in injected[0].source
        assert "remove-cell" in injected[0].metadata.tags
        errors = [
            o for c in notebook.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"
        ]
        assert not errors, f"{name}: error outputs {errors}"


def test_smoke_profile_is_fast_enough(smoke):
    notebooks = {k: v for k, v in smoke["timings"].items() if k != "paper"}
    assert sum(notebooks.values()) <= SMOKE_BUDGET_S, f"smoke notebooks took {notebooks} s"


def test_figures_named_after_their_notebook_and_committed_ones_untouched(smoke):
    pipeline = smoke["pipeline"]
    assert pipeline.figures_dir == ROOT / "build" / "smoke" / "figures"
    names = pipeline.notebooks()
    figures = sorted(pipeline.figures_dir.glob("*.png"))
    assert figures, "the smoke run produced no figure"
    for figure in figures:
        assert any(figure.name.startswith(f"{n}_") for n in names), (
            f"{figure.name} is named after no notebook"
        )
        assert figure.stat().st_size > 1000
    listed = []
    for name in names:
        listed += json.loads((pipeline.executed_dir / f"{name}.manifest.json").read_text())["figures"]
    assert sorted(listed) == sorted(f.relative_to(ROOT).as_posix() for f in figures)
    assert _snapshot(ROOT / "figures") == smoke["committed_before"], "the smoke profile wrote into figures/"
    expected = {"validation_eigenvalues", "validation_trace", "validation_density", "validation_rescaling"}
    assert expected <= {f.stem for f in figures}


def test_raw_results_saved(smoke):
    results = smoke["pipeline"].results_root / "validation"
    for name in ["exact_eigenvalues.npy", "eigenvalues.csv", "trace.csv", "slq.npz", "rescaling.csv"]:
        assert (results / name).stat().st_size > 0, name


def test_paper_built_with_every_chapter_and_glued_numbers(smoke, pages):
    html = smoke["pipeline"].html_dir
    names = {p.relative_to(html).as_posix() for p in pages}
    assert {
        "index.html",
        "methods.html",
        "notebooks/validation.html",
        "limitations.html",
        "references.html",
    } <= names
    validation = (html / "notebooks" / "validation.html").read_text()
    assert validation.count("pasted-text") > 20, "glued numbers missing from the validation chapter"
    assert len(re.findall(r"Figure \d+", validation)) >= 4, "numbered figure captions missing"
    index = (html / "index.html").read_text()
    assert "pasted-text" in index, "the abstract does not paste numbers from the validation notebook"
    references = (html / "references.html").read_text()
    for author in ["Yao", "Hutchinson", "Meyer", "Ghorbani", "Dinh", "Keskar", "Frankle", "Entezari",
                   "Ainsworth", "Cohen", "Jiang", "Greydanus", "Li"]:  # fmt: skip
        assert author in references, author
    for page in pages:
        text = re.sub(r"<script.*?</script>", "", page.read_text(), flags=re.DOTALL)
        assert not UNRESOLVED.search(re.sub(r"<[^>]+>", "", text)), f"unresolved text in {page.name}"


# TeX that MathJax did not typeset (what a reader sees when the maths failed to load)
RAW_TEX = re.compile(r"\\(frac|mathbb|lambda|sum|operatorname|begin\{)|\$\$|\\\[")
MATHJAX_READY = "() => window.MathJax && MathJax.startup && MathJax.startup.promise"


def test_paper_in_a_real_browser(smoke, pages):
    """Every page in headless chromium, offline (only the built files may load): every image loaded, the maths
    typeset by the bundled MathJax (no raw TeX visible), nothing unresolved visible, no horizontal overflow of the
    page body at a laptop's width, a screenshot kept."""
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} not found: the browser test needs Debian's chromium "
            "(`nox -s tests` installs it with apt-get where it may; else apt-get install -y chromium)"
        )
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is part of the paper extra")
    html = smoke["pipeline"].html_dir
    shots = smoke["pipeline"].build_dir / "screenshots"
    if shots.exists():
        shutil.rmtree(shots)
    shots.mkdir(parents=True)
    remote: list[str] = []

    def offline(route):
        if route.request.url.startswith("file:"):
            route.continue_()
        else:
            remote.append(route.request.url)
            route.abort()

    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.route("**/*", offline)
            total_images = total_maths = 0
            for path in pages:
                page.goto(path.as_uri(), wait_until="load")
                name = path.relative_to(html).as_posix()
                images = page.eval_on_selector_all(
                    "img", "els => els.map(e => ({src: e.src, ok: e.complete && e.naturalWidth > 0}))"
                )
                broken = [i["src"] for i in images if not i["ok"]]
                assert not broken, f"{name}: images not loaded {broken}"
                total_images += len(images)
                maths = page.eval_on_selector_all(".math", "els => els.length")
                if maths:
                    page.wait_for_function(MATHJAX_READY, timeout=30_000)
                    page.evaluate("() => MathJax.startup.promise")
                    typeset = page.eval_on_selector_all("mjx-container", "els => els.length")
                    assert typeset >= maths, f"{name}: {maths} formulas, {typeset} typeset by MathJax"
                    total_maths += typeset
                visible = page.inner_text("body")
                match = UNRESOLVED.search(visible)
                assert match is None, f"{name}: unresolved text {match.group(0)!r} visible"
                raw = RAW_TEX.search(visible)
                assert raw is None, f"{name}: raw TeX {raw.group(0)!r} visible (MathJax did not render it)"
                page.evaluate(
                    "() => document.fonts.ready.then(() => true)"
                )  # MathJax's web fonts, for the shot
                width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
                assert width[0] <= width[1], (
                    f"{name}: the page is {width[0]} px wide in a {width[1]} px window"
                )
                page.screenshot(path=str(shots / f"{name.replace('/', '_').removesuffix('.html')}.png"),
                                full_page=True)  # fmt: skip
        finally:
            browser.close()
    assert not remote, f"the paper requested files from the network: {sorted(set(remote))[:5]}"
    assert total_images >= 4, "the paper shows fewer images than the validation chapter has figures"
    assert total_maths >= 5, f"only {total_maths} formulas typeset in the whole paper"
    assert len(list(shots.glob("*.png"))) == len(pages)


def test_paper_is_a_readers_book(smoke, pages):
    """The reader's HTML: the book theme, MathJax bundled (no CDN), a download button per chapter serving its
    executed notebook, numbered captioned tables with their CSV next to them, the claims dashboard on the landing
    page with every research question, and the reproducibility appendix."""
    html = smoke["pipeline"].html_dir
    index = (html / "index.html").read_text()
    assert "sphinx-book-theme" in index or "sphinx_book_theme" in index
    for page in pages:
        text = page.read_text()
        assert not re.search(r"cdn\.jsdelivr|cdnjs", text), f"{page.name} loads from a CDN"
    assert (html / "_static" / "mathjax" / "tex-chtml.js").exists()
    assert 'id="tbl-claims"' in index, "the landing page has no claims dashboard"
    dashboard = index[index.index('id="tbl-claims"') :].split("</table>")[0]
    for question in ("RQ1", "RQ2", "RQ3", "RQ4"):
        assert f">{question}<" in dashboard, f"the dashboard lists no claim of {question}"
    rows = dashboard.count("<tr") - 1
    links = re.findall(r'href="(notebooks/[a-z0-9_]+\.html#[a-z0-9-]+)"', dashboard)
    assert len(links) == rows, f"{rows} claims, {len(links)} links to their evidence"
    for link in links:
        target, anchor = link.split("#")
        assert f'id="{anchor}"' in (html / target).read_text(), f"{link} leads nowhere"
    for name in smoke["pipeline"].notebooks():
        chapter = (html / "notebooks" / f"{name}.html").read_text()
        assert f"_sources/notebooks/{name}.ipynb" in chapter, f"{name}: no download button for its notebook"
        assert (html / "_sources" / "notebooks" / f"{name}.ipynb").exists()
        tables = re.findall(r'<table class="[^"]*results-table[^"]*" id="(tbl-[a-z0-9-]+)"', chapter)
        assert tables, f"{name}: no numbered results table"
        assert len(re.findall(r"Table \d+\.\d+", chapter)) >= len(tables), f"{name}: tables without captions"
        csvs = re.findall(r'href="(\.\./_downloads/[0-9a-f]+/[a-z0-9_]+\.csv)"', chapter)
        assert len(csvs) >= len(tables), f"{name}: {len(tables)} tables, {len(csvs)} CSV links"
        for csv in csvs:
            assert (html / "notebooks" / csv).resolve().stat().st_size > 0, csv
    appendix = (html / "reproducibility.html").read_text()
    for text in (
        "Software and hardware",
        "torch",
        "thread and sweep settings",
        "cache key",
        "commit",
        "--only",
    ):
        assert text in appendix, f"the reproducibility appendix lacks {text!r}"


def _reading_text(page: Path) -> str:
    """What a reader sees of a page as text: no scripts, styles, code or maths."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(page.read_text(), "html.parser")
    for node in soup(["script", "style", "code", "pre", "math"]):
        node.decompose()
    for node in soup.select(".math, mjx-container, .highlight"):
        node.decompose()
    return " ".join(soup.get_text(" ").split())


def test_numbers_read_one_way(smoke, pages):
    """Every number of the built paper reads one way: no E-notation (``1e-13``), no Python ``nan``,
    a missing value always `glue.MISSING`, no "probe(s)" plurals."""
    leaks = re.compile(r"(?<![\w.])\d+(?:\.\d+)?e[+-]?\d+(?![\w.])|\bnan\b|\w\(s\)|\[n/a, n/a\]")
    found = {}
    for page in pages:
        text = _reading_text(page)
        hits = [text[max(0, m.start() - 40) : m.end() + 20] for m in leaks.finditer(text)]
        if hits:
            found[page.name] = hits[:5]
    assert not found, f"numbers written another way: {found}"


def test_full_profile_dry_run_runs_nothing(capsys):
    before = _snapshot(ROOT / "build" / "full" / "notebooks")
    assert main(["--profile", "full", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "profile full" in out
    assert "validation" in out
    assert "sphinx" in out
    assert "'profile': 'full'" in out
    assert "build/full/figures" in out
    assert _snapshot(ROOT / "build" / "full" / "notebooks") == before
    assert set(PROFILES) == {"smoke", "paper", "full"}


def test_paper_profile_writes_committed_figures():
    assert Pipeline("paper", root=ROOT).figures_dir == ROOT / "figures"
    assert Pipeline("paper", root=ROOT).parameters("validation")["figures_dir"] == "figures"


def test_bad_options_get_clear_errors(capsys):
    with pytest.raises(ValueError, match="unknown profile 'huge'"):
        Pipeline("huge", root=ROOT)
    assert main(["--profile", "smoke", "--only", "nope", "--dry-run"]) == 1
    assert "unknown notebook(s) ['nope']" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--profile", "huge"])
    with pytest.raises(FileNotFoundError, match="not the landscape repository root"):
        Pipeline("smoke", root=ROOT / "lib")


def _toy_repo(tmp_path: Path, body: str) -> Path:
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "paper").mkdir()
    (tmp_path / "lib" / "landscape").mkdir(parents=True)
    (tmp_path / "notebooks" / "toy.py").write_text(body)
    return tmp_path


def test_notebook_without_parameters_cell_is_refused(tmp_path):
    root = _toy_repo(tmp_path, "# %%\nx = 1\n")
    with pytest.raises(PipelineError, match="no cell tagged 'parameters'"):
        Pipeline("smoke", root=root).execute("toy")


def test_figure_not_named_after_its_notebook_is_refused(tmp_path):
    body = (
        '# %% tags=["parameters"]\nprofile = "paper"\nfigures_dir = "figures"\nresults_dir = "results"\n\n'
        "# %%\nfrom pathlib import Path\nPath(figures_dir).mkdir(parents=True, exist_ok=True)\n"
        "(Path(figures_dir) / 'other_plot.png').write_bytes(b'not really a png')\n"
    )
    root = _toy_repo(tmp_path, body)
    with pytest.raises(PipelineError, match="not named after the notebook"):
        Pipeline("smoke", root=root).execute("toy")


def test_paper_needs_executed_notebooks(tmp_path):
    root = _toy_repo(tmp_path, '# %% tags=["parameters"]\nprofile = "paper"\n')
    with pytest.raises(PipelineError, match="no executed notebook"):
        Pipeline("smoke", root=root).build_paper()


def test_rerun_is_cached_until_something_changes(tmp_path, capsys):
    body = (
        '# %% tags=["parameters"]\nprofile = "paper"\nfigures_dir = "figures"\nresults_dir = "results"\n\n'
        "# %%\nfrom pathlib import Path\nPath(figures_dir).mkdir(parents=True, exist_ok=True)\n"
        "(Path(figures_dir) / 'toy_plot.png').write_text(profile)\n"
    )
    root = _toy_repo(tmp_path, body)
    pipeline = Pipeline("smoke", root=root)
    assert pipeline.execute("toy") > 0
    figure = root / "build" / "smoke" / "figures" / "toy_plot.png"
    assert figure.read_text() == "smoke"
    assert pipeline.execute("toy") == 0
    assert "up to date" in capsys.readouterr().out
    figure.unlink()  # a missing figure
    assert pipeline.execute("toy") > 0
    (root / "lib" / "landscape" / "new.py").write_text("x = 1\n")  # the library changed
    assert not pipeline.is_current("toy")
    assert pipeline.execute("toy", force=False) > 0
    assert pipeline.execute("toy", force=True) > 0


def test_an_edit_during_execution_leaves_the_notebook_out_of_date(tmp_path):
    """The cache key is taken before the notebook runs: code edited while it runs (here by the notebook itself)
    is not recorded as what it ran."""
    body = (
        '# %% tags=["parameters"]\nprofile = "paper"\nfigures_dir = "figures"\nresults_dir = "results"\n\n'
        "# %%\nfrom pathlib import Path\nPath('lib/landscape/edited.py').write_text('x = 2\\n')\n"
    )
    root = _toy_repo(tmp_path, body)
    pipeline = Pipeline("smoke", root=root)
    assert pipeline.execute("toy") > 0
    assert (root / "lib" / "landscape" / "edited.py").exists()
    assert not pipeline.is_current("toy")
    assert pipeline.execute("toy") > 0  # run again, now with the edit
    assert pipeline.is_current("toy")


def test_manifest_comparison_and_timing_keys(tmp_path):
    assert is_timing_key("runtime_minutes")
    assert is_timing_key("wall_time")
    assert is_timing_key("wall time")
    assert is_timing_key("training_minutes")
    assert not is_timing_key("lambda_max")
    assert not is_timing_key("num_seeds")
    base = {"figures": {"a.png": "1"}, "results": {"t.csv": "2"},
            "notebooks": {"nb": {"glued": {"x": "0.5"}, "timings": {"runtime_minutes": "1.0"}}}}  # fmt: skip
    other = json.loads(json.dumps(base))
    other["notebooks"]["nb"]["timings"]["runtime_minutes"] = "9.0"
    other["environment"] = {"cpu": "elsewhere"}
    assert compare_manifests(base, other) == []
    other["notebooks"]["nb"]["glued"]["x"] = "0.6"
    other["figures"]["a.png"] = "3"
    assert compare_manifests(base, other) == ["figures/a.png: 1 != 3", "nb::x: '0.5' != '0.6'"]
