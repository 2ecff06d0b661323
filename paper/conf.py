"""Sphinx configuration of the landscape paper.

Built by `python -m landscape.paper.pipeline` (or `nox -s paper`) from a staging copy of this folder plus the
papermill-executed notebooks (`notebooks/<name>.ipynb`); MyST-NB never executes anything here.
"""

project = "Loss-landscape geometry, measured exactly"
author = "The landscape authors"
copyright = "2025, the landscape authors"

extensions = ["myst_nb", "sphinxcontrib.bibtex"]
exclude_patterns = ["_build", "**.ipynb_checkpoints", "Thumbs.db", ".DS_Store", "notebooks/_source"]

# Notebooks are executed by papermill before Sphinx runs; here they are only read.
nb_execution_mode = "off"
nb_output_stderr = "remove"
nb_merge_streams = True
nb_render_markdown_format = "myst"
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]
myst_heading_anchors = 3

numfig = True
numfig_format = {"figure": "Figure %s", "table": "Table %s"}
math_numfig = True

bibtex_bibfiles = ["references.bib"]
bibtex_default_style = "plain"
bibtex_reference_style = "author_year"

html_theme = "alabaster"
html_title = project
html_theme_options = {
    "description": "Reproducible measurements of neural-network loss surfaces",
    "fixed_sidebar": True,
}
html_show_sourcelink = False
