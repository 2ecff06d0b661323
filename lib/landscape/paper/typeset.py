"""A Sphinx extension that writes the numbers of the built paper one way: ``1.2×10⁻¹³``, never ``1.2e-13``, and
`glue.MISSING` (``n/a``), never Python's ``nan``.

The chapters glue raw numbers with a format spec in the text (``{glue:text}`key:.1e```), and MyST-NB writes
them with Python's ``format``; this transform gives every such number, and every number typed in the text, the
notation of `glue.format_number`, after glue has been resolved. Code, literals and maths are left as they are.
Enabled in ``paper/conf.py`` (``extensions = [..., "landscape.paper.typeset"]``).
"""

from __future__ import annotations

import re

from landscape.paper.glue import MISSING, times_ten

__all__ = ["setup", "typeset_numbers"]

_SCIENTIFIC = re.compile(r"(?<![\w.])([-−]?\d+(?:\.\d+)?)e([+-]?)(\d+)(?![\w.])")
_NAN = re.compile(r"(?<![\w/])nan(?![\w/])")


def _scientific(match: re.Match) -> str:
    mantissa, sign, exponent = match.groups()
    return times_ten(mantissa, -int(exponent) if sign == "-" else int(exponent))


def typeset_numbers(text: str) -> str:
    """`text` with E-notation numbers as ``m×10ⁿ`` and the word ``nan`` as `glue.MISSING`.

    >>> typeset_numbers("error 1.2e-13, loss 5e+00, ratio 3.7e+05, nan and nan.")
    'error 1.2×10⁻¹³, loss 5, ratio 3.7×10⁵, n/a and n/a.'
    >>> typeset_numbers("the run 1e5a, sha 0x1e5, v1.2e3 and the word nano stay")
    'the run 1e5a, sha 0x1e5, v1.2e3 and the word nano stay'
    """
    return _NAN.sub(MISSING, _SCIENTIFIC.sub(_scientific, text))


def _typeset_doctree(app, doctree, docname) -> None:
    from docutils import nodes

    skipped = (nodes.literal, nodes.literal_block, nodes.math, nodes.math_block, nodes.raw, nodes.reference)
    for node in list(doctree.findall(nodes.Text)):
        parent = node.parent
        if parent is None or any(isinstance(a, skipped) for a in _ancestors(parent)):
            continue
        text = str(node)
        new = typeset_numbers(text)
        if new != text:
            parent.replace(node, nodes.Text(new))


def _ancestors(node):
    while node is not None:
        yield node
        node = node.parent


def setup(app) -> dict:
    """Register the transform (run on every document once its references and glue are resolved)."""
    app.connect("doctree-resolved", _typeset_doctree)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
