"""What the conformance tests share: the toy data, the component settings, the
pipelines trained once per factory (kept as bytes, so each test that changes a
pipeline gets a copy of its own)."""

from dataclasses import dataclass
from typing import Dict, List

import spacy
from spacy.language import Language
from spacy.training import Example
from thinc.api import fix_random_seed

from ..support import SINGLE_DATA, make_examples, tiny_config

FACTORIES = ["bertcat", "bertcat_multilabel"]

DIFFERENCES = "docs/reference/textcat-differences.md"

# Each label goes with words of its own, so that a tiny random model fits the data in
# a few dozen steps from any seed; the third doc leaves `business` missing
# (multi-label supports missing values), the last has no positive label.
MULTILABEL_DATA = [
    ("bank profit market shares and the team win the match", {"sport": 1.0, "business": 1.0, "tech": 0.0}),
    ("phone computer software internet", {"sport": 0.0, "business": 0.0, "tech": 1.0}),
    ("the game and the goal", {"sport": 1.0, "tech": 0.0}),
    ("election vote minister party", {"sport": 0.0, "business": 0.0, "tech": 0.0}),
]
DATA = {"bertcat": SINGLE_DATA, "bertcat_multilabel": MULTILABEL_DATA}
LABELS = {"bertcat": ("NEG", "POS"), "bertcat_multilabel": ("business", "sport", "tech")}
STEPS = {"bertcat": 20, "bertcat_multilabel": 50}
LEARN_RATE = {"bertcat": 1e-2, "bertcat_multilabel": 1e-2}


def component_config(name: str, factory: str) -> Dict:
    """The component settings of the trained pipelines: the tiny model (no dropout).
    bertcat_multilabel trains with the unweighted binary cross-entropy: its default,
    the asymmetric loss with balanced weights, is made for data with many negatives
    and fits a four-doc toy set only slowly."""
    config = tiny_config(name)
    if factory == "bertcat_multilabel":
        config["loss"] = {"@misc": "spacy-bertcat.binary_cross_entropy.v1"}
        config["class_weights"] = None
    return config


@dataclass
class Trained:
    """A pipeline of one component trained on DATA[factory]: its settings, its bytes
    and the loss of each training step."""

    factory: str
    config: Dict
    data: List
    bytes_data: bytes
    losses: List[float]

    def load(self) -> Language:
        """RETURNS (Language): A copy of the trained pipeline, of its own."""
        nlp = spacy.blank("en")
        nlp.add_pipe(self.factory, config=self.config)
        return nlp.from_bytes(self.bytes_data)

    def examples(self, nlp: Language) -> List[Example]:
        return make_examples(nlp, self.data)

    @property
    def texts(self) -> List[str]:
        return [text for text, _ in self.data]


def train(name: str, factory: str) -> Trained:
    fix_random_seed(0)
    config = component_config(name, factory)
    nlp = spacy.blank("en")
    nlp.add_pipe(factory, config=config)
    examples = make_examples(nlp, DATA[factory])
    optimizer = nlp.initialize(lambda: examples)
    optimizer.learn_rate = LEARN_RATE[factory]
    losses = [nlp.update(examples, sgd=optimizer)[factory] for _ in range(STEPS[factory])]
    return Trained(factory, config, DATA[factory], nlp.to_bytes(), losses)
