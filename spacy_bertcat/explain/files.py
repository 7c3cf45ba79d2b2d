"""Explanations of a data file as one HTML page (the library behind `spacy-bertcat
explain`), and of an evaluation's most confident errors (the `evaluate` report's
explanation page)."""

import time
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

from spacy.language import Language
from spacy.tokens import Doc

from ..components.pipes import classify_texts
from ..data.atomic import atomic_write, check_output_file
from ..data.formats import detect_format
from ..data.records import read_docbin, read_records
from ..data.text import has_content
from ..errors import Errors
from .api import resolve_components
from .attribute import default_method
from .render import doc_tokens, html_page, render_one, render_tokens


@dataclass
class ExplainFileResult:
    """output (Path): The HTML page. n_docs (int): Docs explained. method (str):
    The method. seconds (float): Time spent explaining (not predicting)."""

    output: Path
    n_docs: int
    method: str
    seconds: float


def read_texts(
    nlp: Language, path: Path, *, text_field: str = "text", limit: Optional[int] = None
) -> List[Tuple[str, List[str], Dict[str, Any]]]:
    """RETURNS (List[Tuple[str, List[str], Dict[str, Any]]]): The first `limit`
    texts with content of a .spacy, JSONL, CSV, TSV or text file, each with its
    gold labels (where the file has them) and where it came from (line, id)."""
    found: Iterable[Tuple[str, List[str], Dict[str, Any]]]
    if detect_format(path) == "spacy":
        found = (
            (doc.text, sorted(k for k, v in doc.cats.items() if v == 1.0), {"index": i})
            for i, doc in enumerate(read_docbin(path, nlp))
        )
    else:
        found = (
            (r.text, r.positives, {"line": r.line, **({"id": r.meta["id"]} if "id" in r.meta else {})})
            for r in read_records(path, text_field=text_field, require_labels=False)
        )
    return list(islice((item for item in found if item[0].strip()), limit))


def explain_file(
    nlp: Language,
    data_path: Union[str, Path],
    output: Union[str, Path],
    *,
    component: Optional[str] = None,
    label: Optional[str] = None,
    limit: Optional[int] = 20,
    method: Optional[str] = None,
    text_field: str = "text",
    overwrite: bool = False,
    inputs: Sequence[Optional[Union[str, Path]]] = (),
    progress: Optional[Callable[[Iterator[Any], int], Iterable[Any]]] = None,
    **settings: Any,
) -> ExplainFileResult:
    """Explain the first `limit` documents of a file with a pipeline's bertcat
    component and write them to one HTML page (written whole, atomically; the
    output is checked first: not an input, not a folder, new unless `overwrite`).

    nlp (Language): The pipeline.
    data_path (Union[str, Path]): A .spacy, JSONL, CSV, TSV or text file.
    output (Union[str, Path]): The HTML file.
    component (Optional[str]): The bertcat component (default: the first).
    label (Optional[str]): The label to explain (default: each doc's predicted one).
    limit (Optional[int]): How many docs (None: all).
    method (Optional[str]): The attribution method (default: the component's
        default: integrated gradients, occlusion for an optimized pipeline).
    inputs: Other inputs the output must not be (the pipeline's folder).
    RETURNS (ExplainFileResult): What was written.
    """
    data_path, output = Path(data_path), Path(output)
    check_output_file(
        output, inputs=[data_path, *inputs], overwrite=overwrite, command="explain --output", example="explain.html"
    )
    pipe = resolve_components(nlp, component)[0]
    if limit is not None and limit < 1:
        raise ValueError(Errors.BC135.format(setting="limit", expected="at least 1", value=limit))
    if label is not None and label not in pipe.labels:
        raise ValueError(Errors.BC130.format(name=pipe.name, label=label, labels=list(pipe.labels)))
    method = method or default_method(pipe)
    items = read_texts(nlp, data_path, text_field=text_field, limit=limit)
    if not items:
        raise ValueError(Errors.BC137.format(path=data_path, detail=" (none has text)"))
    docs = classify_texts(nlp, pipe.name, [text for text, _, _ in items])
    start = time.perf_counter()
    stream: Iterable[Doc] = progress(iter(docs), len(docs)) if progress is not None else docs
    for doc in stream:
        pipe.explain(doc, label, method=method, **settings)
    seconds = time.perf_counter() - start
    figures = []
    for doc, (_, gold, where) in zip(docs, items):
        note = _note(where, gold, doc._.bertcat_labels.get(pipe.name) if doc._.bertcat_labels else None)
        for summary, values in _stored(doc, pipe.name):
            figures.append(render_one(doc, summary, values, note))
    title = f"Explanations of {data_path.name} by component '{pipe.name}'"
    intro = f"<h2 style='font-weight: normal'>{_escape(title)}</h2>"
    atomic_write(output, html_page(figures, title=title, intro=intro, lang=nlp.lang or "en").encode("utf-8"))
    return ExplainFileResult(output, len(docs), method, seconds)


def _stored(doc: Doc, component: str) -> List[Tuple[Dict[str, Any], List[float]]]:
    from .attribute import explanations_of

    return explanations_of(doc, component)


def _note(where: Dict[str, Any], gold: List[str], predicted: Optional[List[str]]) -> str:
    parts = [f"{k} {v}" for k, v in where.items()]
    if predicted is not None:
        parts.append(f"predicted: {', '.join(predicted) or '(none)'}")
    if gold:
        parts.append(f"gold: {', '.join(gold)}")
    return " · ".join(parts)


def _escape(text: str) -> str:
    import html

    return html.escape(text)


def explain_errors(
    nlp: Language, component: str, errors: Sequence[Dict[str, Any]], texts: Sequence[str], *, n: int
) -> Dict[str, Any]:
    """Explain the first `n` of an evaluation's most confident errors (report.py's
    "errors": each names the doc's index): for an exclusive classifier the wrong
    class it predicted, for a multi-label one the label it got wrong.

    RETURNS (Dict[str, Any]): JSON-ready: the method and, per error, the doc's
        tokens (text, whitespace), the explanation's summary and attributions.
        Empty where there is nothing to explain or captum is not installed
        ("skipped" then says why).
    """
    pipe = resolve_components(nlp, component)[0]
    chosen = list(errors[:n])
    if not chosen:
        return {}
    method = default_method(pipe)
    try:
        from .attribute import import_captum

        import_captum()
    except ImportError as e:
        return {"skipped": str(e)}
    docs = classify_texts(nlp, component, [texts[e["index"]] for e in chosen])
    items = []
    for error, doc in zip(chosen, docs):
        if not has_content(doc):
            continue
        label = error.get("label", error.get("predicted"))
        result = pipe.explain(doc, label, method=method)
        items.append(
            {
                "error": {k: v for k, v in error.items() if k != "text"},
                "tokens": doc_tokens(doc),
                "summary": result.summary(),
                "attributions": result.attributions,
            }
        )
    return {"method": method, "component": component, "items": items}


def errors_page(explanations: Dict[str, Any], *, title: str) -> str:
    """RETURNS (str): The HTML page of explain_errors' result."""
    figures = []
    for item in explanations.get("items", []):
        error = item["error"]
        if "kind" in error:  # multi-label
            note = f"{error['kind']} of '{error['label']}' (threshold {error['threshold']:.3f}) · gold: {', '.join(error['gold']) or '(none)'}"
        else:
            note = f"predicted '{error['predicted']}', gold '{error['gold']}' (its score {error['gold_score']:.3f})"
        note = f"#{error['index']} (id {error['id']}) · " + note
        figures.append(render_tokens(item["tokens"], item["summary"], item["attributions"], note))
    intro = (
        f"<h2 style='font-weight: normal'>{_escape(title)}</h2>"
        "<p style='color: #444'>The most confident errors, each explained for the label the model got wrong: "
        "which tokens pushed its score up (blue) or down (orange).</p>"
    )
    return html_page(figures, title=title, intro=intro)
