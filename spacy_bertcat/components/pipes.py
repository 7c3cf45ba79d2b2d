"""Which components of a pipeline are text classifiers, which of them are bertcat's,
and how to run one of them alone: the one answer to each question for the whole
package (commands, prediction engines, training hooks, serving).

Side channels. spaCy hands a component little of its surroundings; where bertcat
needs more, it uses these, and nothing else:

- ``components/side_channels.py``: a weak map from each component to the pipeline it
  was initialized in (training ignores gold labels of the pipeline's other text
  classifiers, and warns about shared labels), and a map from id(vocab) to the
  vocab's bertcat components (the wordpiece-length batcher, which sees only
  examples, counts with the component's own tokenizer).
- ``components/side_channels.py`` ``in_training_loop``: ``bertcat_multilabel``'s
  ``score`` looks for a frame of ``spacy.training.loop`` on the call stack (once per
  evaluation), so that `spacy train`'s evaluations tune the thresholds and an
  ``nlp.evaluate`` of one's own does not (it tunes inside
  ``pipe.tuning_thresholds()``).
- ``components/side_channels.py`` ``set_explainer`` / ``explainer``: ``pipe.explain``
  calls the function the explain room (a floor above) installs there on import.
- ``distributed/loop.py``: for the length of a data-parallel run, three functions of
  ``spacy.training.loop`` are replaced (``create_train_batches``,
  ``create_evaluation_callback``, ``create_before_to_disk_callback``) and put back
  afterwards; the shim's ``grad_reducer`` hook (layers/shim.py) all-reduces
  gradients at each optimizer step.
- ``layers/shim.py``: ``os.register_at_fork`` runs torch on one thread in forked
  ``nlp.pipe(n_process=...)`` workers (GNU OpenMP is not fork-safe).
"""

import contextlib
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, cast

from spacy.language import Language
from spacy.pipeline import MultiLabel_TextCategorizer, TextCategorizer
from spacy.tokens import Doc

from ..errors import Errors
from .bertcat import BertCat
from .side_channels import cats_components

__all__ = ["Classifier", "bertcat_components", "cats_components", "classify_texts", "is_bertcat", "only_component"]


def is_bertcat(pipe: Any) -> bool:
    """Whether a pipe is a bertcat component (either factory, or a subclass)."""
    return isinstance(pipe, BertCat)


def bertcat_components(nlp: Language) -> Dict[str, BertCat]:
    """RETURNS (Dict[str, BertCat]): The pipeline's bertcat components by name, in
    pipeline order, disabled ones included."""
    return {name: cast(BertCat, pipe) for name, pipe in nlp.components if is_bertcat(pipe)}


def is_exclusive(pipe: Any) -> bool:
    """Whether a text classifier predicts mutually exclusive classes: bertcat
    components say so themselves, spaCy's textcat by its class; any other
    doc.cats writer is taken as exclusive unless it has `exclusive = False`."""
    if is_bertcat(pipe):
        return bool(pipe.exclusive)
    if isinstance(pipe, MultiLabel_TextCategorizer):
        return False
    if isinstance(pipe, TextCategorizer):
        return True
    return bool(getattr(pipe, "exclusive", True))


class Classifier:
    """What prediction and the commands need to know about a pipeline's text
    classifier (bertcat or any other component that writes doc.cats).

    name (str): The component's name.
    pipe (Any): The component.
    factory (str): Its factory.
    labels (List[str]): Its labels.
    exclusive (bool): Exclusive classes (softmax-like) or multi-label.
    thresholds (Dict[str, float]): Per-label decision thresholds (multi-label):
        a bertcat component's decision state, another classifier's `threshold`.
    has_sets (bool): Whether its docs carry conformal prediction sets (a bertcat
        component calibrated with alphas).
    """

    def __init__(self, nlp: Language, name: Optional[str] = None) -> None:
        classifiers = [n for n in nlp.pipe_names if n in cats_components(nlp)]
        if name is None:
            if not classifiers:
                raise ValueError(Errors.BC033.format(detail=" (none assigns doc.cats)", names=nlp.pipe_names))
            name = classifiers[0]
        if name not in nlp.pipe_names:
            raise ValueError(Errors.BC033.format(detail=f" named '{name}'", names=nlp.pipe_names))
        self.name = name
        self.pipe: Any = cast(Any, nlp.get_pipe(name))
        self.factory = nlp.get_pipe_meta(name).factory
        self.labels: List[str] = list(getattr(self.pipe, "labels", ()))
        self.exclusive = is_exclusive(self.pipe)
        self.is_bertcat = is_bertcat(self.pipe)
        if self.is_bertcat:
            self.thresholds: Dict[str, float] = dict(self.pipe.thresholds)
            calibration = self.pipe.decisions.calibration
        else:
            default = getattr(self.pipe, "cfg", {}).get("threshold", 0.5)
            self.thresholds = {label: default for label in self.labels}
            calibration = None
        self.has_sets = bool(self.exclusive and calibration is not None and calibration.alphas)


@contextlib.contextmanager
def only_component(nlp: Language, name: str) -> Iterator[None]:
    """Run the pipeline without the other components that write doc.cats, so
    doc.cats holds exactly the named classifier's scores (two classifiers may
    predict labels of the same name), and no time goes to classifiers whose
    results would be dropped."""
    others = [n for n in nlp.pipe_names if n != name and n in cats_components(nlp)]
    with nlp.select_pipes(disable=others) if others else contextlib.nullcontext():
        yield


def classify_texts(
    nlp: Language,
    component: str,
    texts: Iterable[str],
    *,
    batch_size: Optional[int] = None,
    progress: Optional[Callable[[Iterator[Doc]], Iterable[Doc]]] = None,
) -> List[Doc]:
    """RETURNS (List[Doc]): The pipeline's docs for the texts, with the named
    classifier alone among the doc.cats writers (only_component); `progress` may
    wrap the stream (a progress bar)."""
    with only_component(nlp, component):
        docs = nlp.pipe(texts, batch_size=batch_size or nlp.batch_size)
        return list(progress(docs) if progress is not None else docs)
