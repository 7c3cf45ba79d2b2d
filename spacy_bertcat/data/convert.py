"""Records files to spaCy's .spacy training files, optionally split into
train / dev / test (the library behind `spacy-bertcat convert`)."""

import warnings
from pathlib import Path
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Sequence

import spacy
from spacy.tokens import Doc

from ..errors import Errors, Warnings
from .atomic import check_output_file
from .records import SPLIT_NAMES, Record, check_labels, read_records, records_to_docs, write_docbin
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
    overwrite: bool = False,
) -> Dict[Path, List[Record]]:
    """Convert a file of records into .spacy files (see convert_cli).

    Nothing is written before every record has been read and checked, each file is
    written atomically, and only the .spacy files of this conversion are written:
    an existing one is an error (BC085) unless `overwrite`; other files of the
    output folder are never touched.

    progress (Optional[Callable]): Wraps each file's stream of docs (a progress
        bar): called with the docs, their number and the file name.
    overwrite (bool): Replace .spacy files of the same names.
    RETURNS (Dict[Path, List[Record]]): The records written to each file.
    """
    input_path, output_dir = Path(input_path), Path(output_dir)
    names = [Path(input_path).stem] if fractions is None else split_names(len(fractions))
    check_output_files(input_path, output_dir, [output_dir / f"{name}.spacy" for name in names], overwrite)
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
    if fractions is not None:
        for name in SPLIT_NAMES[len(fractions) :]:
            stale = output_dir / f"{name}.spacy"
            if stale.exists():
                written = ", ".join(path.name for path in parts)
                warnings.warn(Warnings.BCW022.format(path=stale, written=written))
    for path, part in parts.items():
        docs = records_to_docs(nlp, part, label_set)
        write_docbin(progress(docs, len(part), path.name) if progress is not None else docs, path)
    return parts


def check_output_files(input_path: Path, output_dir: Path, paths: Sequence[Path], overwrite: bool) -> None:
    """Check where convert writes, before it reads anything: OUTPUT_DIR is a folder
    (or new) and not a label folder's (inside the input: it would be read back as
    one), and the .spacy files it writes are new unless `overwrite`.

    RAISES (ValueError): BC080, BC081 or BC085.
    """
    if input_path.is_dir():
        target, source = output_dir.resolve(), input_path.resolve()
        if target == source or source in target.parents:
            relation = "is" if target == source else "is inside"
            raise ValueError(Errors.BC080.format(output=output_dir, relation=relation, input=input_path))
    if output_dir.exists() and not output_dir.is_dir():
        reason = "it is a file, and convert writes its .spacy files into a folder; give a folder"
        raise ValueError(Errors.BC089.format(path=output_dir, reason=reason))
    for path in paths:
        check_output_file(path, inputs=[input_path], overwrite=overwrite, command="convert")
