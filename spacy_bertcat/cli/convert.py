"""`convert`: JSONL / CSV / TSV files (or label folders) into .spacy DocBins."""
import warnings
from collections import Counter
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import spacy
from wasabi import msg

from ..data.records import Record, check_labels, read_records, records_to_docs, write_docbin
from ..errors import Errors
from ..data.splits import parse_fractions, split_records
from ._util import Arg, Opt, app, parse_label_list, progress, split_names


@app.command("convert")
def convert_cli(
    # fmt: off
    input_path: Path = Arg(..., help="Input file (.jsonl, .csv, .tsv) or folder of label subfolders of .txt files", exists=True),
    output_dir: Path = Arg(..., help="Output directory for the .spacy file(s)", file_okay=False),
    split: Optional[str] = Opt(None, "--split", "-s", help="Fractions for train,dev[,test] files, e.g. 0.8,0.1,0.1 (stratified by label, seeded)"),
    seed: int = Opt(0, "--seed", help="Random seed of the split"),
    text_field: str = Opt("text", "--text-field", "-t", help="Field (column) holding the text"),
    label_field: Optional[str] = Opt(None, "--label-field", "-l", help="Field holding the labels: a label, a list of labels or a cats dict (default: label, labels or cats, whichever is present)"),
    labels_sep: str = Opt("|", "--labels-sep", help="Separator of several labels in one CSV/TSV value"),
    labels: Optional[str] = Opt(None, "--labels", help="Comma-separated label set; records with other labels are an error"),
    multilabel: bool = Opt(False, "--multilabel", "-m", help="Labels are independent (any number per text); default: exactly one label per text"),
    lang: str = Opt("en", "--lang", help="Language of the tokenizer for the docs"),
    encoding: Optional[str] = Opt(None, "--encoding", help="Encoding of the input files (default: UTF-8; byte-order marks are honoured)"),
    fallback_encoding: Optional[str] = Opt(None, "--fallback-encoding", help="Label folders: read files that are not valid in --encoding with this one (e.g. cp1252), naming each; default: such a file is an error"),
    # fmt: on
):
    """
    Convert classification data into spaCy's binary .spacy format, for `spacy
    train` with a bertcat (or textcat) config. Each record is a text with a
    `label` (one class), `labels` (a list) or `cats` (a dict of label: 0/1).
    With --split, the records are divided at random (seeded) into train.spacy,
    dev.spacy and test.spacy, stratified by label, keeping duplicate texts
    together; without it, OUTPUT_DIR/<input name>.spacy holds all records.
    Invalid records stop the conversion with an error that names the line (or,
    in label folders, the file). In label folders, the .txt files of subfolders
    count for their top folder's label.
    """
    try:
        fractions = parse_fractions(split) if split is not None else None
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            written = convert(
                input_path, output_dir, fractions=fractions, seed=seed, text_field=text_field,
                label_field=label_field, labels_sep=labels_sep, labels=parse_label_list(labels),
                exclusive=not multilabel, lang=lang, encoding=encoding, fallback_encoding=fallback_encoding,
            )
    except ValueError as e:
        msg.fail(str(e), exits=1)
    for warning in caught:
        msg.warn(str(warning.message))
    for path, part in written.items():
        counts = Counter(label for r in part for label in r.positives)
        msg.good(f"Wrote {len(part)} docs to {path}", ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))


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
) -> Dict[Path, List[Record]]:
    """Convert a file of records into .spacy files (see convert_cli).

    RETURNS (Dict[Path, List[Record]]): The records written to each file.
    """
    records = list(
        read_records(
            input_path, text_field=text_field, label_field=label_field, labels_sep=labels_sep,
            exclusive=exclusive, allowed_labels=labels, encoding=encoding, fallback_encoding=fallback_encoding,
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
        write_docbin(progress(docs, total=len(part), desc=f"Writing {path.name}"), path)
    return parts
