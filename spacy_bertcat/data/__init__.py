"""Records in and out (floor 1 of docs/architecture.md): file formats and readers,
validation and DocBins, seeded stratified splits, conversion to .spacy files,
whether a text has content, and the one place that writes files and folders
atomically and checks where a command may write (atomic.py)."""
