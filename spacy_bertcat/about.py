__title__ = "spacy-bertcat"
__version__ = "0.1.0"
