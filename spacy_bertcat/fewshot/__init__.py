"""Few-shot training: the contrastive warm-up a bertcat component runs at
initialize (SetFit's recipe inside `spacy train`): pairs of training documents
generated from their labels (``pairs.py``) and the contrastive training of the
encoder on them, followed by a logistic-regression start for the mean-pooling head
(``warmup.py``, registered as ``spacy-bertcat.contrastive_warmup.v1``)."""
