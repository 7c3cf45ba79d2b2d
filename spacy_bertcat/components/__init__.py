"""The spaCy components (floor 2 of docs/architecture.md): the `bertcat` and
`bertcat_multilabel` pipes, their losses and scorers, the doc._ extensions they
write, their file I/O, their typed decision state (thresholds and calibration),
and which pipes of a pipeline are text classifiers and bertcat components
(pipes.py, which also lists every side channel of the package)."""
