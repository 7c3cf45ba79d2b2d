"""Explanations as HTML, in displaCy's idiom (spacy/displacy/templates.py): each
doc a figure, its tokens shaded by attribution (blue: for the label, orange:
against it; the colours stay apart for red-green colour blindness), the label,
its score and the method in the header, one doc or many per page, shown inline
in Jupyter."""

import html
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from spacy.tokens import Doc
from spacy.util import is_in_jupyter

from .attribute import explanations_of

POSITIVE = (30, 100, 200)  # blue: the token raises the label's score
NEGATIVE = (230, 120, 20)  # orange: the token lowers it

TPL_PAGE = """<!DOCTYPE html>
<html lang="{lang}">
    <head>
        <meta charset="utf-8">
        <title>{title}</title>
    </head>

    <body style="font-size: 16px; font-family: -apple-system, BlinkMacSystemFont, 'Segoe UI', Helvetica, Arial, sans-serif, 'Apple Color Emoji', 'Segoe UI Emoji', 'Segoe UI Symbol'; padding: 4rem 2rem; direction: {dir}">{content}</body>
</html>"""

TPL_LEGEND = """<div class="bertcat-legend" style="margin-bottom: 2rem; font-size: 0.9em">
<mark style="background: rgba({pos}, 0.6); padding: 0.2em 0.45em; border-radius: 0.35em">for the label</mark>
<mark style="background: rgba({neg}, 0.6); padding: 0.2em 0.45em; border-radius: 0.35em">against it</mark>
<span style="color: #666; margin-left: 0.5rem">shade: the token's attribution, relative to the strongest in its document; hover a token for its value</span>
</div>"""

TPL_FIGURE = """<figure class="bertcat-explanation" style="margin: 0 0 3rem 0">{header}{content}</figure>"""

TPL_HEADER = """<div style="margin-bottom: 0.6rem; font-size: 0.95em">
<span style="font-weight: bold; font-size: 1.05em; background: #eee; padding: 0.2em 0.5em; border-radius: 0.35em">{label}</span>
<span style="margin-left: 0.5rem">score <b>{score}</b>{calibrated}</span>
<span style="color: #666; margin-left: 0.75rem">{details}</span>{notes}
</div>"""

TPL_TOKENS = """<div class="entities" style="line-height: 2.3; direction: {dir}">{content}</div>"""

TPL_TOKEN = """<mark style="background: rgba({rgb}, {alpha:.2f}); padding: 0.15em 0.1em; line-height: 1; border-radius: 0.25em" title="{value:+.4f}">{text}</mark>"""

METHOD_NAMES = {
    "integrated_gradients": "integrated gradients",
    "gradient_x_input": "gradient x input",
    "occlusion": "occlusion",
}


def render(
    docs: Union[Doc, Sequence[Doc]],
    *,
    component: Optional[str] = None,
    label: Optional[str] = None,
    notes: Optional[Sequence[Optional[str]]] = None,
    page: bool = False,
    title: str = "bertcat explanations",
    jupyter: Optional[bool] = None,
) -> Optional[str]:
    """Render the stored explanations of docs (pipe.explain, explaining) as HTML.

    docs (Union[Doc, Sequence[Doc]]): The explained doc(s).
    component (Optional[str]): Only this component's explanations.
    label (Optional[str]): Only this label's explanations.
    notes (Optional[Sequence[Optional[str]]]): A line for each doc's header
        (e.g. its gold label), plain text.
    page (bool): A whole HTML page, rather than markup to embed.
    title (str): The page's title.
    jupyter (Optional[bool]): Show inline in a notebook (None: where one runs).
    RETURNS (Optional[str]): The HTML, or None where it was shown in Jupyter.
    """
    if isinstance(docs, Doc):
        docs = [docs]
    figures: List[str] = []
    for i, doc in enumerate(docs):
        note = notes[i] if notes is not None and i < len(notes) else None
        for summary, values in explanations_of(doc, component):
            if label is not None and summary["label"] != label:
                continue
            figures.append(render_one(doc, summary, values, note))
    direction = docs[0].vocab.writing_system.get("direction", "ltr") if docs else "ltr"
    legend = TPL_LEGEND.format(pos=_rgb(POSITIVE), neg=_rgb(NEGATIVE))
    markup = legend + "".join(figures)
    if jupyter or (jupyter is None and is_in_jupyter()):
        from IPython.core.display import HTML, display

        display(HTML(f'<div class="bertcat-explanations">{markup}</div>'))
        return None
    if page:
        lang = docs[0].lang_ if docs else "en"
        return TPL_PAGE.format(lang=lang, dir=direction, title=html.escape(title), content=markup)
    return markup


def render_one(doc: Doc, summary: Dict[str, Any], values: Sequence[float], note: Optional[str] = None) -> str:
    """RETURNS (str): One explanation of a doc as a figure."""
    direction = doc.vocab.writing_system.get("direction", "ltr")
    return render_tokens(doc_tokens(doc), summary, values, note, direction=direction)


def doc_tokens(doc: Doc) -> List[Tuple[str, str]]:
    """RETURNS (List[Tuple[str, str]]): Each token's text and trailing whitespace
    (what an explanation needs of a doc to be drawn again, e.g. from JSON)."""
    return [(token.text, token.whitespace_) for token in doc]


def render_tokens(
    tokens: Sequence[Tuple[str, str]],
    summary: Dict[str, Any],
    values: Sequence[float],
    note: Optional[str] = None,
    *,
    direction: str = "ltr",
) -> str:
    """RETURNS (str): One explanation as a figure, from the doc's tokens (text,
    whitespace), the explanation's summary and its attributions."""
    return TPL_FIGURE.format(
        header=_header(summary, note), content=TPL_TOKENS.format(dir=direction, content=_tokens(tokens, values))
    )


def html_page(figures: Sequence[str], *, title: str, intro: str = "", lang: str = "en", direction: str = "ltr") -> str:
    """RETURNS (str): A whole HTML page of rendered figures, with the legend
    (`intro`: HTML put before it)."""
    legend = TPL_LEGEND.format(pos=_rgb(POSITIVE), neg=_rgb(NEGATIVE))
    content = intro + legend + "".join(figures)
    return TPL_PAGE.format(lang=lang, dir=direction, title=html.escape(title), content=content)


def _header(summary: Dict[str, Any], note: Optional[str]) -> str:
    details = [f"{summary['component']}", METHOD_NAMES.get(summary["method"], summary["method"])]
    if summary.get("delta") is not None:
        details[-1] += (
            f" from the masked text's score {summary['baseline_score']:.3f}"
            f" ({summary['n_steps']} steps, completeness error {summary['delta']:+.3f})"
        )
    if summary.get("n_windows", 0) > 1:
        details.append(f"{summary['n_windows']} windows, {summary['aggregation']} aggregation")
    if summary.get("truncated"):
        details.append("part of the text not read by the model")
    calibrated = " (calibrated)" if summary.get("calibrated") else ""
    notes = f'\n<div style="margin-top: 0.3rem">{html.escape(note)}</div>' if note else ""
    return TPL_HEADER.format(
        label=html.escape(str(summary["label"])),
        score=f"{summary['score']:.3f}",
        calibrated=calibrated,
        details=html.escape(" · ".join(details)),
        notes=notes,
    )


def _tokens(tokens: Sequence[Tuple[str, str]], values: Sequence[float]) -> str:
    scale = max((abs(v) for v in values), default=0.0) or 1.0
    parts: List[str] = []
    padded = list(values) + [0.0] * (len(tokens) - len(values))
    for (text, whitespace), value in zip(tokens, padded):
        text = html.escape(text)
        if value:
            rgb, alpha = _shade(value, scale)
            parts.append(TPL_TOKEN.format(rgb=rgb, alpha=alpha, value=value, text=text))
        else:
            parts.append(text)
        parts.append(html.escape(whitespace))
    return "".join(parts)


def _shade(value: float, scale: float) -> Tuple[str, float]:
    colour = POSITIVE if value > 0 else NEGATIVE
    return _rgb(colour), 0.08 + 0.72 * min(1.0, abs(value) / scale)


def _rgb(colour: Tuple[int, int, int]) -> str:
    return ", ".join(str(c) for c in colour)
