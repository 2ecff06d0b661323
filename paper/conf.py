"""Sphinx configuration of the landscape paper.

Built by `python -m landscape.paper.pipeline` (or `nox -s paper`) from a staging copy of this folder plus the
papermill-executed notebooks (`notebooks/<name>.ipynb`); MyST-NB never executes anything here.
"""

project = "Loss-landscape geometry, measured exactly"
author = "The landscape authors"
copyright = "2025, the landscape authors"

# sphinx-mathjax-offline bundles MathJax 3 into _static/: the HTML renders maths opened offline, without a CDN.
# landscape.paper.typeset writes every number of the built pages one way (1.2×10⁻¹³, n/a), glued or typed.
extensions = ["myst_nb", "sphinxcontrib.bibtex", "sphinx-mathjax-offline", "landscape.paper.typeset"]
# _generated/ holds pieces the pipeline writes for {include} (the claims dashboard), not pages of their own
exclude_patterns = [
    "_build", "**.ipynb_checkpoints", "Thumbs.db", ".DS_Store", "notebooks/_source", "_generated", "results",
]

# Notebooks are executed by papermill before Sphinx runs; here they are only read.
nb_execution_mode = "off"
nb_output_stderr = "remove"
nb_merge_streams = True
nb_render_markdown_format = "myst"
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3

numfig = True
numfig_format = {"figure": "Figure %s", "table": "Table %s"}
math_numfig = True

bibtex_bibfiles = ["references.bib"]
bibtex_default_style = "plain"
bibtex_reference_style = "author_year"

# The executablebooks reader's theme: a page per chapter, a wide content area, a download button per page
# (the executed notebook of a chapter), wide tables scrolling inside their own box.
html_theme = "sphinx_book_theme"
html_title = project
html_static_path = ["_static"]
html_css_files = ["paper.css"]
html_copy_source = True  # the download button serves the page's source: a chapter's executed notebook
html_show_sourcelink = False
html_theme_options = {
    "home_page_in_toc": True,
    "use_download_button": True,
    "use_fullscreen_button": False,
    "use_repository_button": False,
    "show_toc_level": 2,
    "navigation_with_keys": False,
    "navbar_persistent": [],  # one search field (the sidebar's), not a second one in the header
}
