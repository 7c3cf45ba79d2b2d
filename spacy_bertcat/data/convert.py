"""Records files to spaCy's .spacy training files, optionally split into
train / dev / test (the library behind `spacy-bertcat convert`)."""

from pathlib import Path
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Sequence

import spacy
from spacy.tokens import Doc

from ..errors import Errors
from .records import Record, check_labels, read_records, records_to_docs, write_docbin
from .splits import split_names, split_records


def convert(
    input_path: Path,
    output_dir: Path,
    *,
    fractions: Optional[Sequence[float]] = None,
    seed: int = 0,
    text_field: str = "text",
    label_field: Optional[str] = None,
    labels_sep: str = "|",
    labels: Optional[List[str]] = None,
    exclusive: bool = True,
    lang: str = "en",
    encoding: Optional[str] = None,
    fallback_encoding: Optional[str] = None,
    progress: Optional[Callable[[Iterator[Doc], int, str], Iterable[Doc]]] = None,
) -> Dict[Path, List[Record]]:
    """Convert a file of records into .spacy files (see convert_cli).

    progress (Optional[Callable]): Wraps each file's stream of docs (a progress
        bar): called with the docs, their number and the file name.
    RETURNS (Dict[Path, List[Record]]): The records written to each file.
    """
    records = list(
        read_records(
            input_path,
            text_field=text_field,
            label_field=label_field,
            labels_sep=labels_sep,
            exclusive=exclusive,
            allowed_labels=labels,
            encoding=encoding,
            fallback_encoding=fallback_encoding,
        )
    )
    found = check_labels(records, exclusive, input_path)
    label_set = labels if labels is not None else found
    if fractions is None:
        parts = {output_dir / f"{Path(input_path).stem}.spacy": records}
    else:
        split = split_records(records, fractions, seed=seed)
        names = split_names(len(fractions))
        for name, part in zip(names, split):
            if not part:
                value = ",".join(str(f) for f in fractions)
                raise ValueError(Errors.BC038.format(value=value, n=len(records), part=name))
        parts = {output_dir / f"{name}.spacy": part for name, part in zip(names, split)}
    nlp = spacy.blank(lang)
    for path, part in parts.items():
        docs = records_to_docs(nlp, part, label_set)
        write_docbin(progress(docs, len(part), path.name) if progress is not None else docs, path)
    return parts
