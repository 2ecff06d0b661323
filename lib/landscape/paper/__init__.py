"""The paper toolchain, kept apart from the probes (``import landscape`` never loads it).

- `pipeline`: Jupytext notebooks → papermill → figures → Sphinx/MyST-NB HTML, with a manifest per build.
- `plotting`: the figures' shared style and `save_figure`.
- `glue`: one way to glue numbers into the paper, and the "estimate [CI]" formatter every chapter uses.
- `stats`: bootstrap and cluster-bootstrap intervals, rank correlations with intervals, and the generalisation-
  measure statistics of Jiang et al. (2020) and Dziugaite et al. (2020).
- `experiments`: one module per chapter (sizes per profile, pure functions returning DataFrames, verdict rules).
- `probe_checks`: the validation chapter's checks of the probes against exact answers.
"""
