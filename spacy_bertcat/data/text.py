"""Whether a document has text to classify, and how long it is, answered once for
training, prediction and the data readers."""

from typing import Any

from spacy.attrs import IS_SPACE
from spacy.tokens import Doc


def has_content(doc: Doc) -> bool:
    """Whether a doc has a token that is not whitespace (without building doc.text,
    which costs a Python object per token). A doc without content is never read by
    the model: it gets the component's defined result for empty text."""
    return len(doc) > 0 and not doc.to_array(IS_SPACE).all()


def is_blank(text: str) -> bool:
    """Whether a text (a string, before it is a doc) has nothing but whitespace:
    the string form of ``has_content``."""
    return not text.strip()


def text_length(item: Any) -> int:
    """RETURNS (int): The characters of an example's (or doc's) text, len(doc.text),
    read from its last token's offset: doc.text joins every token in Python, which
    costs as much as the tokenizer for each example of each epoch."""
    doc = item.predicted if hasattr(item, "predicted") else item
    if not len(doc):
        return 0
    last = doc[-1]
    return last.idx + len(last.text_with_ws)
