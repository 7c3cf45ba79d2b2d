"""Scores into decisions, on arrays (floor 1 of docs/architecture.md): per-label
threshold tuning, calibration and conformal prediction sets, and the metrics they
share with the evaluation report. Nothing here knows spaCy's pipes."""
