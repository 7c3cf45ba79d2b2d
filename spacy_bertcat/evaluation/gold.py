"""Held-out gold data for a pipeline's classifier: read once for evaluate,
find-thresholds and calibrate, with the same checks."""

from pathlib import Path
from typing import List, Optional, Tuple

import numpy
from spacy.language import Language
from spacy.tokens import Doc

from ..components.pipes import Classifier
from ..data.records import read_labelled_docs
from ..errors import Errors
from .report import gold_matrix


def read_gold(
    nlp: Language,
    classifier: Classifier,
    data_path: Path,
    *,
    task: str,
    text_field: str = "text",
    label_field: Optional[str] = None,
    labels_sep: str = "|",
    refuse_unknown_labels: bool = False,
) -> Tuple[List[Doc], numpy.ndarray, numpy.ndarray]:
    """Read gold data for the classifier's labels (exclusive classes validated as
    such), as docs and (docs, labels) gold and mask matrices.

    task (str): What the data is for, in the error of data without annotations.
    refuse_unknown_labels (bool): Raise BC035 for gold labels the classifier does
        not have (evaluate), instead of leaving them out.
    RETURNS (Tuple[List[Doc], numpy.ndarray, numpy.ndarray]): docs, gold, mask.
    RAISES (ValueError): BC035, or BC040 when no document has a gold value of the
        classifier's labels.
    """
    docs = read_labelled_docs(
        data_path,
        nlp,
        labels=classifier.labels,
        text_field=text_field,
        label_field=label_field,
        labels_sep=labels_sep,
        exclusive=True if classifier.exclusive else None,
    )
    if refuse_unknown_labels:
        unknown = sorted({k for doc in docs for k in doc.cats} - set(classifier.labels))
        if unknown:
            raise ValueError(
                Errors.BC035.format(path=data_path, unknown=unknown, name=classifier.name, labels=classifier.labels)
            )
    gold, mask = gold_matrix(docs, classifier.labels)
    if not mask.any():
        raise ValueError(Errors.BC040.format(path=data_path, labels=classifier.labels, task=task))
    return docs, gold, mask
