"""What a bertcat component can find out about the pipeline around it, where spaCy
hands it nothing: the two weak maps of the package (see components/pipes.py for the
list of every side channel).

- ``remember_pipeline`` / ``pipeline_of``: the pipeline a component was initialized
  in (its other text classifiers' labels are not its own: training ignores them,
  and shared labels are warned about). A weak map pipe -> weak reference to the
  Language, so the component neither keeps the pipeline alive nor pickles it.
- ``in_training_loop``: whether spaCy's training loop (``spacy.training.loop``) is on
  the call stack, so that an evaluation of `spacy train` tunes multi-label
  thresholds and an ``nlp.evaluate`` of one's own does not (checked once per
  evaluation).
- ``remember_component`` / ``find_component``: the initialized (or loaded) bertcat
  components of each vocab, so that a batcher (training/batching.py), which sees
  only examples, can count wordpieces with the component's own tokenizer:
  id(vocab) -> {component name: weak reference}. spaCy's Vocab takes no weak
  references; an entry whose component is gone, or whose vocab is another object
  at the same address, is ignored.
- ``set_explainer`` / ``explainer``: the function behind ``pipe.explain`` and
  ``pipe.explaining``. Explanations live a floor above the components
  (``spacy_bertcat/explain/``, which reads components and layers); importing the
  package installs its function here, so a component never imports upward.
"""

import sys
import weakref
from typing import Any, Callable, Dict, Optional, cast

from spacy.language import Language

_pipelines: "weakref.WeakKeyDictionary[Any, weakref.ref]" = weakref.WeakKeyDictionary()
_components: Dict[int, Dict[str, "weakref.ref"]] = {}
_explainer: Optional[Callable[..., Any]] = None


def remember_pipeline(pipe: Any, nlp: Language) -> None:
    """Record the pipeline `pipe` was initialized in."""
    _pipelines[pipe] = weakref.ref(nlp)


def pipeline_of(pipe: Any) -> Optional[Language]:
    """RETURNS (Optional[Language]): The pipeline the pipe was initialized in, if
    it is still alive."""
    ref = _pipelines.get(pipe)
    return ref() if ref is not None else None


def cats_components(nlp: Language) -> Dict[str, Any]:
    """RETURNS (Dict[str, Any]): The components of a pipeline that assign doc.cats
    (any text classifier: bertcat, textcat, ...), by name, disabled ones included."""
    return {name: pipe for name, pipe in nlp.components if "doc.cats" in nlp.get_pipe_meta(name).assigns}


def in_training_loop() -> bool:
    """Whether a function of spaCy's training loop (`spacy train`, and the workers
    of `spacy-bertcat train`, which run the same loop) is on the call stack."""
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_globals.get("__name__") == "spacy.training.loop":
            return True
        frame = frame.f_back  # type: ignore[assignment]
    return False


def remember_component(pipe: Any) -> None:
    """Record an initialized bertcat component as its vocab's."""
    entries = _components.setdefault(id(pipe.vocab), {})
    for name in [n for n, ref in entries.items() if ref() is None or cast(Any, ref()).vocab is not pipe.vocab]:
        del entries[name]  # gone, or of an earlier vocab at the same address
    entries[pipe.name] = weakref.ref(pipe)


def find_component(vocab: Any, name: Optional[str] = None) -> Optional[Any]:
    """RETURNS: The (first, or named) bertcat component initialized with this vocab."""
    for key, ref in _components.get(id(vocab), {}).items():
        pipe = ref()
        if pipe is not None and pipe.vocab is vocab and (name is None or key == name):
            return pipe
    return None


def set_explainer(function: Callable[..., Any]) -> None:
    """Install the function `pipe.explain(doc, ...)` calls as
    `function(pipe, doc, ...)` (spacy_bertcat/explain/ installs its own)."""
    global _explainer
    _explainer = function


def explainer() -> Optional[Callable[..., Any]]:
    """RETURNS (Optional[Callable[..., Any]]): The installed explainer, if any."""
    return _explainer
