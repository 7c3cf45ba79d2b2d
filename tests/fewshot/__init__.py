"""Tests of the few-shot recipe (spacy_bertcat/fewshot/)."""
