"""The conformance suite (issue 24): spaCy's own tests of its text classifiers and of
trainable pipes, adapted to ``bertcat`` and ``bertcat_multilabel``. Each file lists,
at its top, what became of every spaCy test it adapts; the deliberate differences
from textcat are in docs/reference/textcat-differences.md."""
