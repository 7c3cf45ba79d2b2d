"""spacy-bertcat tune (spacy_bertcat/tune/)."""
