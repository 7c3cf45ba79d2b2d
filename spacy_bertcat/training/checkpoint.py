"""Whole-pipeline atomic saves for `spacy train` (a [training.before_to_disk] callback).

spaCy's training loop saves `model-last` with `nlp.to_disk`, which writes file after
file into the existing directory: a run killed during a save (out of memory,
preempted, Ctrl-C twice) leaves a mix of old and new files, or a truncated one, and
the pipeline no longer loads. With this callback the pipeline is written into a
hidden sibling directory first and swapped in only when complete, so `model-last`
always holds one whole save.
"""

import copy
from pathlib import Path
from typing import Any, Callable, Optional, Union

from spacy.language import Language
from spacy.util import registry

from ..data.atomic import save_directory_atomically


@registry.callbacks("spacy-bertcat.atomic_save.v1")
def create_atomic_save_v1(
    before_to_disk: Optional[Callable[[Language], Language]] = None,
) -> Callable[[Language], Language]:
    """A [training.before_to_disk] callback whose saves replace the directory whole.

    before_to_disk (Optional[Callable[[Language], Language]]): Another
        before_to_disk callback to apply first (spaCy takes only one).
    """

    def atomic_before_to_disk(nlp: Language) -> Language:
        if before_to_disk is not None:
            nlp = before_to_disk(nlp)
        # A shallow copy shares the pipeline; only its to_disk differs, so the
        # training loop's own nlp object is left as it was.
        saving = copy.copy(nlp)

        def to_disk(path: Union[str, Path], **kwargs: Any) -> None:
            save_directory_atomically(path, lambda tmp: nlp.to_disk(tmp, **kwargs))

        saving.to_disk = to_disk  # type: ignore[method-assign]
        return saving

    return atomic_before_to_disk
