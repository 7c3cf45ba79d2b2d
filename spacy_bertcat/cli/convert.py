"""`convert`: JSONL / CSV / TSV files (or label folders) into .spacy DocBins."""

import warnings
from collections import Counter
from pathlib import Path
from typing import Optional

import typer
from wasabi import msg

from ..data.convert import convert
from ..data.splits import parse_fractions
from ._util import Arg, Opt, app, parse_label_list, progress, refuse_given


@app.command("convert")
def convert_cli(
    # fmt: off
    ctx: typer.Context,
    input_path: Path = Arg(
        ..., help="Input file (.jsonl, .csv, .tsv) or folder of label subfolders of .txt files", exists=True
    ),
    output_dir: Path = Arg(
        ...,
        help="Output directory for the .spacy file(s); its other files are never touched",
        file_okay=False,
    ),
    split: Optional[str] = Opt(
        None,
        "--split",
        "-s",
        help="Fractions for train,dev[,test] files, e.g. 0.8,0.1,0.1 (stratified by label, seeded)",
    ),
    seed: int = Opt(0, "--seed", help="Random seed of the split"),
    text_field: str = Opt("text", "--text-field", "-t", help="Field (column) holding the text"),
    label_field: Optional[str] = Opt(
        None,
        "--label-field",
        "-l",
        help="Field holding the labels: a label, a list of labels or a cats dict (default: label, labels or cats, whichever is present)",
    ),
    labels_sep: str = Opt("|", "--labels-sep", help="Separator of several labels in one CSV/TSV value"),
    labels: Optional[str] = Opt(
        None, "--labels", help="Comma-separated label set; records with other labels are an error"
    ),
    multilabel: bool = Opt(
        False,
        "--multilabel",
        "-m",
        help="Labels are independent (any number per text); default: exactly one label per text",
    ),
    lang: str = Opt("en", "--lang", help="Language of the tokenizer for the docs"),
    encoding: Optional[str] = Opt(
        None, "--encoding", help="Encoding of the input files (default: UTF-8; byte-order marks are honoured)"
    ),
    fallback_encoding: Optional[str] = Opt(
        None,
        "--fallback-encoding",
        help="Read a file that is not valid in --encoding with this one (e.g. cp1252), naming it in a warning (in label folders, each such file); default: such a file is an error",
    ),
    overwrite: bool = Opt(
        False,
        "--overwrite",
        help="Replace .spacy files of the same names in OUTPUT_DIR (default: an existing one is an error)",
    ),
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
    count for their top folder's label. Nothing is written before every record
    has been read; .spacy files already in OUTPUT_DIR are replaced only with
    --overwrite, and nothing else there is touched.
    """
    if split is None:
        refuse_given(ctx, {"seed": "it seeds the random split of --split"}, "without --split", ", or add --split")
    try:
        fractions = parse_fractions(split) if split is not None else None
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            written = convert(
                input_path,
                output_dir,
                fractions=fractions,
                seed=seed,
                text_field=text_field,
                label_field=label_field,
                labels_sep=labels_sep,
                labels=parse_label_list(labels),
                exclusive=not multilabel,
                lang=lang,
                encoding=encoding,
                fallback_encoding=fallback_encoding,
                overwrite=overwrite,
                progress=lambda docs, total, name: progress(docs, total=total, desc=f"Writing {name}"),
            )
    except ValueError as e:
        msg.fail(str(e), exits=1)
    for warning in caught:
        msg.warn(str(warning.message))
    for path, part in written.items():
        counts = Counter(label for r in part for label in r.positives)
        msg.good(f"Wrote {len(part)} docs to {path}", ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
