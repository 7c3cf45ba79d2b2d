"""`optimize`: a pipeline for CPU serving, its bertcat encoders on ONNX Runtime
(int8 by default), saved as a normal pipeline (see serving/optimize.py)."""

import functools
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, cast

import numpy
import typer
from spacy.language import Language
from wasabi import msg

from ..data.records import read_labelled_docs
from ..evaluation.report import gold_matrix, score_matrix
from ..serving.optimize import accuracy, components_to_optimize, decisions, optimize_component
from ._util import (
    Arg,
    Opt,
    app,
    load_pipeline,
    pipeline_output,
    predict_docs,
    refuse_given,
    run_check,
    save_pipeline,
)


@app.command("optimize")
def optimize_cli(
    # fmt: off
    ctx: typer.Context,
    model: Path = Arg(..., help="Path of a trained pipeline with bertcat components", exists=True, file_okay=False),
    output_dir: Path = Arg(
        ..., help="Save the optimized pipeline here (a new folder; MODEL is not changed)", file_okay=False
    ),
    replace: bool = Opt(
        False,
        "--replace",
        help="Replace OUTPUT if it is a pipeline saved before (by an earlier run, say): only a folder that holds nothing but a saved pipeline's files is replaced, any other folder is refused",
    ),
    int8: bool = Opt(
        True, "--int8/--fp32", help="Quantize the encoder's linear layers to int8 (default), or keep float32"
    ),
    int8_embeddings: bool = Opt(
        False,
        "--int8-embeddings",
        help="Quantize the embedding tables too: a quarter of the size on disk instead of two thirds, but slower on short texts",
    ),
    component: Optional[List[str]] = Opt(
        None, "--component", "-C", help="The component(s) to optimize (default: every bertcat component)"
    ),
    check: Optional[Path] = Opt(
        None,
        "--check",
        help="Labelled data (.spacy, .jsonl/.csv/.tsv) on which to compare the optimized pipeline with the original: decisions, scores, accuracy",
        exists=True,
    ),
    check_limit: int = Opt(2000, "--check-limit", help="Most documents of --check to use", min=1),
    text_field: str = Opt("text", "--text-field", "-t", help="Text field of JSONL/CSV --check data"),
    label_field: Optional[str] = Opt(
        None, "--label-field", "-l", help="Label field of JSONL/CSV --check data (default: label, labels or cats)"
    ),
    # fmt: on
):
    """
    Make a pipeline for CPU serving: each bertcat component's encoder is exported
    to ONNX and run by ONNX Runtime, its linear layers in int8 by default (about
    3.5x the documents per second of the original on CPUs, two thirds of its size). The
    output is a normal pipeline: spacy.load, nlp.pipe, spacy package and the
    spacy-bertcat commands work as before, with the same chunking, aggregation,
    thresholds and calibration. It predicts but does not train: keep the
    original for further training. Needs `pip install "spacy-bertcat[onnx]"`.
    Check the result on your dev data with --check (int8 changes scores
    slightly).
    """
    output_check = functools.partial(
        pipeline_output,
        output=output_dir,
        model=model,
        data=[check],
        command="optimize",
        in_place=False,
        replace=replace,
    )
    run_check(output_check(None))  # before the pipeline loads
    if int8_embeddings and not int8:
        msg.fail("--int8-embeddings quantizes embeddings to int8: it cannot go with --fp32", exits=1)
    if check is None:
        refuse_given(
            ctx,
            {
                "check_limit": "it limits the documents of --check",
                "text_field": "it names the text field of --check data",
                "label_field": "it names the label field of --check data",
            },
            "without --check",
            ", or add --check DATA",
        )
    if component and len(set(component)) != len(component):
        component = list(dict.fromkeys(component))
    nlp = load_pipeline(str(model))
    try:
        names = components_to_optimize(nlp, component)
        gold_docs = _read_check(nlp, check, names[0], check_limit, text_field, label_field) if check else None
        before = _scores(nlp, names, gold_docs) if gold_docs else None
        made = {}
        for name in names:
            start = time.perf_counter()
            made[name] = optimize_component(nlp, name, int8=int8, int8_embeddings=int8_embeddings)
            msg.good(
                f"Optimized '{name}': {made[name]['engine']} {'int8' if int8 else 'float32'}, "
                f"{made[name]['bytes'] / 2**20:.1f} MB (float32 {made[name]['fp32_bytes'] / 2**20:.1f} MB), "
                f"{time.perf_counter() - start:.1f}s"
            )
        if gold_docs:
            assert before is not None
            _print_check(nlp, names, gold_docs, before)
    except ValueError as e:
        msg.fail(str(e), exits=1)
    save_pipeline(nlp, output_dir, output_check(nlp))
    msg.good(f"Saved the optimized pipeline to {output_dir}")


def _read_check(nlp: Language, path: Path, name: str, limit: int, text_field: str, label_field: Optional[str]) -> List:
    pipe: Any = nlp.get_pipe(name)
    docs = read_labelled_docs(path, nlp, labels=list(pipe.labels), text_field=text_field, label_field=label_field)
    return docs[:limit]


def _scores(nlp: Language, names: List[str], gold_docs: List) -> Dict[str, numpy.ndarray]:
    scores = {}
    for name in names:
        docs = predict_docs(nlp, [doc.text for doc in gold_docs], None, f"check '{name}'", name)
        scores[name] = score_matrix(docs, list(cast(Any, nlp.get_pipe(name)).labels))
    return scores


def _print_check(nlp: Language, names: List[str], gold_docs: List, before: Dict[str, numpy.ndarray]) -> None:
    after = _scores(nlp, names, gold_docs)
    rows = []
    for name in names:
        pipe: Any = nlp.get_pipe(name)
        gold, mask = gold_matrix(gold_docs, list(pipe.labels))
        same = float((decisions(pipe, before[name]) == decisions(pipe, after[name])).all(1).mean())
        metric = "accuracy" if getattr(pipe, "exclusive", True) else "micro-F1"
        rows.append(
            (
                name,
                len(gold_docs),
                f"{100 * same:.2f}",
                f"{numpy.abs(before[name] - after[name]).max():.4f}",
                f"{metric} {100 * accuracy(pipe, before[name], gold, mask):.2f}",
                f"{100 * accuracy(pipe, after[name], gold, mask):.2f}",
            )
        )
    msg.table(
        rows,
        header=("component", "docs", "same decisions %", "max |score diff|", "original", "optimized"),
        aligns=("l", "r", "r", "r", "r", "r"),
    )
