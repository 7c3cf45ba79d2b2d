"""`predict`: JSONL / CSV / text files in, JSONL with doc.cats out (streaming)."""
import json
from pathlib import Path
from typing import Any, Dict, Iterator, Optional, Tuple

from spacy.language import Language
from wasabi import msg

from ..data import detect_format, make_record, read_rows
from ._util import Arg, Classifier, Opt, app, count_lines, load_pipeline, progress


@app.command("predict")
def predict_cli(
    # fmt: off
    model: str = Arg(..., help="Pipeline package name or path"),
    input_path: Path = Arg(..., help="Input: .jsonl or .csv/.tsv with a text field, or .txt with one text per line", exists=True, dir_okay=False),
    output_path: Path = Arg(..., help="Output JSONL file", dir_okay=False),
    text_field: str = Opt("text", "--text-field", "-t", help="Text field (column) of JSONL/CSV input"),
    component: Optional[str] = Opt(None, "--component", "-C", help="The classifier whose labels are reported (default: the first that sets doc.cats)"),
    batch_size: Optional[int] = Opt(None, "--batch-size", help="Docs per nlp.pipe batch (default: the pipeline's)"),
    keep_text: bool = Opt(True, "--keep-text/--drop-text", help="Copy the text to the output"),
    gpu_id: int = Opt(-1, "--gpu-id", "-g", help="GPU ID or -1 for CPU"),
    # fmt: on
):
    """
    Classify texts with a trained pipeline. Each output line holds the input
    record's fields, `cats` (the score of each label) and the decision:
    `predicted_label` (exclusive classes: the highest score) or
    `predicted_labels` (multi-label: the labels at or above their threshold).
    Texts are streamed through nlp.pipe, so large files need little memory.
    """
    nlp = load_pipeline(model, gpu_id)
    try:
        n = predict(nlp, input_path, output_path, text_field=text_field, component=component,
                    batch_size=batch_size, keep_text=keep_text)
    except ValueError as e:
        msg.fail(str(e), exits=1)
    msg.good(f"Wrote {n} predictions to {output_path}")


def predict(
    nlp: Language,
    input_path: Path,
    output_path: Path,
    *,
    text_field: str = "text",
    component: Optional[str] = None,
    batch_size: Optional[int] = None,
    keep_text: bool = True,
    show_progress: bool = True,
) -> int:
    """Stream the texts of a file through the pipeline into a JSONL file.

    RETURNS (int): The number of texts classified.
    """
    classifier = Classifier(nlp, component)
    file_format = detect_format(input_path)
    if file_format == "txt":
        text_field = "text"  # one text per line

    def rows() -> Iterator[Tuple[str, Dict[str, Any]]]:
        for line, row in read_rows(input_path, file_format):
            # Validates the text (non-empty string) and names the line if not.
            make_record(row, line=line, path=input_path, text_field=text_field, label_field="", require_labels=False)
            yield row[text_field], row

    total = count_lines(input_path)
    if total is not None and file_format in ("csv", "tsv"):
        total = max(total - 1, 0)  # the header
    output_path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    docs = nlp.pipe(rows(), as_tuples=True, batch_size=batch_size or nlp.batch_size)
    with output_path.open("w", encoding="utf-8") as file_:
        for doc, row in progress(docs, total=total, desc="Predicting", disable=not show_progress):
            out = {k: v for k, v in row.items() if keep_text or k != text_field}
            out["cats"] = {label: doc.cats[label] for label in classifier.labels if label in doc.cats}
            if classifier.exclusive:
                out["predicted_label"] = max(out["cats"], key=out["cats"].get) if out["cats"] else None
            else:
                out["predicted_labels"] = [
                    label for label, score in out["cats"].items() if score >= classifier.thresholds[label]
                ]
            file_.write(json.dumps(out, ensure_ascii=False) + "\n")
            n += 1
    return n
