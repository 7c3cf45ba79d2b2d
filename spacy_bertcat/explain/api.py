"""The public entry points: ``explain`` (a pipeline or a component, a doc or a
text) and the ``explaining`` block, in which ``nlp(text)`` and ``nlp.pipe(texts)``
explain every doc they annotate."""

import contextlib
from typing import Any, Iterator, List, Optional, Union

import spacy
from spacy.language import Language
from spacy.tokens import Doc

from ..components.bertcat import BertCat
from ..components.pipes import bertcat_components, is_bertcat
from ..errors import Errors
from .attribute import Explanation, explain_doc


def resolve_components(nlp: Language, component: Optional[str] = None) -> List[BertCat]:
    """RETURNS (List[BertCat]): The named bertcat component, or all of the
    pipeline's; BC136 where there is none of that name."""
    found = bertcat_components(nlp)
    if component is None and found:
        return list(found.values())
    if component not in found:
        what = f"'{component}'" if component is not None else "There"
        if component is None:
            what = "The pipeline has no bertcat component, so nothing"
        raise ValueError(Errors.BC136.format(what=what, names=sorted(found)))
    return [found[component]]


def explain(
    nlp_or_pipe: Union[Language, BertCat],
    doc: Union[Doc, str],
    label: Optional[str] = None,
    *,
    component: Optional[str] = None,
    method: Optional[str] = None,
    **settings: Any,
) -> Explanation:
    """Explain a bertcat component's score of a doc for a label (default: the
    predicted one) on the doc's tokens; see attribute.explain_doc for the
    methods and settings. A text is made into a doc with the pipeline's
    tokenizer (and the pipeline is not run).

    nlp_or_pipe (Union[Language, BertCat]): A pipeline (its first bertcat
        component, or `component`) or a component.
    doc (Union[Doc, str]): The doc or text.
    label (Optional[str]): The label; None for the predicted one.
    component (Optional[str]): The component of a pipeline to explain.
    method (Optional[str]): "integrated_gradients" (default), "gradient_x_input"
        or "occlusion".
    RETURNS (Explanation): The attributions and what they explain.
    """
    if is_bertcat(nlp_or_pipe):
        pipe = nlp_or_pipe
        if isinstance(doc, str):  # the default tokenizer of the vocab's language
            doc = spacy.blank(pipe.vocab.lang or "xx", vocab=pipe.vocab).make_doc(doc)
    else:
        nlp = nlp_or_pipe
        pipe = resolve_components(nlp, component)[0]  # type: ignore[arg-type]
        if isinstance(doc, str):
            doc = nlp.make_doc(doc)
    return explain_doc(pipe, doc, label, method=method, **settings)  # type: ignore[arg-type]


@contextlib.contextmanager
def explaining(nlp: Language, component: Optional[str] = None, **settings: Any) -> Iterator[None]:
    """Within the block, each doc the bertcat components (all, or `component`)
    annotate is explained, as `pipe.explain(doc, **settings)` would (settings:
    label, method, n_steps, calibrated, rationale).

    nlp (Language): The pipeline.
    component (Optional[str]): The one component to explain; None for all.
    """
    pipes = resolve_components(nlp, component)
    with contextlib.ExitStack() as stack:
        for pipe in pipes:
            stack.enter_context(pipe.explaining(**settings))
        yield
