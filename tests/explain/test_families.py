"""Every encoder family of the matrix explains through its own input embeddings,
frame and windows (tiny random models built in-process)."""

import pytest
import spacy

from ..support import SINGLE_DATA, make_examples, tiny_config
from ..support.families import FAMILIES, make_family_dir

pytestmark = pytest.mark.transformers

CHUNKING = {"@misc": "spacy-bertcat.sliding_window.v1", "stride": 6, "aggregation": "attention", "max_windows": 2}
TEXT = "a great film and i love this movie but the ending was boring"


@pytest.mark.parametrize("family", [pytest.param(f, id=f.model_type) for f in FAMILIES])
def test_family_is_explained(family, tmp_path):
    nlp = spacy.blank("en")
    config = tiny_config(make_family_dir(tmp_path, family.model_type), chunking=CHUNKING, max_length=12)
    config["model"].update({s: None for s in family.no_dropout})
    nlp.add_pipe("bertcat", config=config)
    nlp.initialize(lambda: make_examples(nlp, SINGLE_DATA))
    doc = nlp(TEXT)
    result = nlp.get_pipe("bertcat").explain(doc, "POS", n_steps=2)
    assert result.n_windows > 1
    assert result.score == pytest.approx(doc.cats["POS"], abs=1e-4)
    assert len(result.attributions) == len(doc) and any(result.attributions)
    change = result.score - result.baseline_score
    assert abs(change - sum(result.attributions) - result.delta) < 1e-5
