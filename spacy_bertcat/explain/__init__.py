"""Explanations: which tokens made a bertcat component's decision.

Token attributions of a label's score on the doc's own spaCy tokens, through the
windows and the aggregation the model really uses (``attribute.py``, on Captum:
integrated gradients, gradient x input, occlusion), ``pipe.explain(doc)`` and the
``explaining(nlp)`` block for ``nlp.pipe`` (``api.py``), their HTML picture in
displaCy's idiom (``render.py``), and the file behind `spacy-bertcat explain`
(``files.py``). Importing the room installs ``explain_doc`` as what
``pipe.explain`` calls (components/side_channels.py).
"""

from .api import explain, explaining
from .attribute import DEFAULT_METHOD, METHODS, Explanation, explain_doc, explanations_of, install
from .render import render

install(explain_doc)

__all__ = [
    "DEFAULT_METHOD",
    "METHODS",
    "Explanation",
    "explain",
    "explain_doc",
    "explaining",
    "explanations_of",
    "render",
]
