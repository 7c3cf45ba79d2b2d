"""Hooks into spaCy's own training loop (floor 3 of docs/architecture.md): the
length-grouped batcher and its wordpiece length, gradual unfreezing, and the
atomic-save callback."""
