"""What the tests share: tiny random models and toy data (no files shipped, no
downloads; every encoder family in support/families.py) and small helpers that build,
train, compare and save pipelines."""

import string
from pathlib import Path
from typing import Dict, List

import numpy
import spacy
import torch
from spacy.language import Language
from spacy.tokens import DocBin
from spacy.training import Example

WORDS = (
    "the a an is was and or but not very good bad great awful film movie game team "
    "match goal win lost market shares bank profit election vote minister party music "
    "song band album phone computer software internet i it this that of to in on for "
    "with at by from love hate fine terrible excellent boring fun sport business politics "
    "tech entertainment"
).split()


def make_tokenizer(model_max_length: int = 512):
    """A small uncased WordPiece tokenizer (BERT's normalizer, pre-tokenizer, frame)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    pieces = list(string.ascii_lowercase + string.digits + string.punctuation)
    pieces += ["##" + c for c in string.ascii_lowercase + string.digits]
    tokens = list(dict.fromkeys(specials + pieces + WORDS))
    vocab = {tok: i for i, tok in enumerate(tokens)}
    backend = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    backend.normalizer = normalizers.BertNormalizer(lowercase=True)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=model_max_length,
    )


def make_model_dir(path: Path, model_type: str = "bert", max_positions: int = 128, seed: int = 0) -> str:
    """Save a tiny random encoder of `model_type` with a tokenizer into `path`."""
    import torch
    from transformers import AutoModel, BertConfig, DistilBertConfig, RobertaConfig

    torch.manual_seed(seed)
    tokenizer = make_tokenizer(model_max_length=max_positions)
    n_vocab = len(tokenizer)
    if model_type == "bert":
        config = BertConfig(
            vocab_size=n_vocab,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=37,
            max_position_embeddings=max_positions,
        )
    elif model_type == "distilbert":
        config = DistilBertConfig(
            vocab_size=n_vocab,
            dim=32,
            n_layers=2,
            n_heads=2,
            hidden_dim=37,
            max_position_embeddings=max_positions,
        )
    elif model_type == "roberta":
        config = RobertaConfig(
            vocab_size=n_vocab,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=37,
            max_position_embeddings=max_positions + 2,
            pad_token_id=0,
        )
    else:
        raise ValueError(model_type)
    AutoModel.from_config(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


SINGLE_DATA = [
    ("a great film, i love this movie", {"POS": 1.0, "NEG": 0.0}),
    ("excellent and fun", {"POS": 1.0, "NEG": 0.0}),
    ("a terrible movie, boring and bad", {"POS": 0.0, "NEG": 1.0}),
    ("i hate this awful film", {"POS": 0.0, "NEG": 1.0}),
]

MULTI_DATA = [
    ("the team won the match and the market was good", {"sport": 1.0, "business": 1.0, "tech": 0.0}),
    ("the bank profit and shares", {"sport": 0.0, "business": 1.0, "tech": 0.0}),
    ("a new phone and computer software", {"sport": 0.0, "business": 0.0, "tech": 1.0}),
    ("the game and the goal", {"sport": 1.0, "business": 0.0}),  # tech missing
]


def make_examples(nlp: Language, data) -> List[Example]:
    return [Example.from_dict(nlp.make_doc(text), {"cats": cats}) for text, cats in data]


def tiny_config(name: str, chunking: Dict = None, **settings) -> Dict:
    """A component config for nlp.add_pipe with a tiny local model."""
    model = {
        "@architectures": "spacy-bertcat.BertClassifier.v1",
        "name": name,
        "max_length": 32,
        "attn_implementation": "sdpa",
        "chunking": chunking or {"@misc": "spacy-bertcat.head.v1"},
        "hidden_dropout": 0.0,
        "attention_dropout": 0.0,
        "classifier_dropout": 0.0,
    }
    model.update(settings)
    return {"model": model}


def train_tiny(name: str, factory: str, data, steps: int, learn_rate: float, **settings) -> Language:
    """A pipeline of one tiny `factory` component over the model `name` (model
    settings as tiny_config takes them), trained for `steps` full-batch updates on
    `data`."""
    import spacy

    nlp = spacy.blank("en")
    nlp.add_pipe(factory, config=tiny_config(name, **settings))
    examples = make_examples(nlp, data)
    optimizer = nlp.initialize(lambda: examples)
    optimizer.learn_rate = learn_rate
    for _ in range(steps):
        nlp.update(examples, sgd=optimizer)
    return nlp


def make_nlp(name, factory="bertcat", data=SINGLE_DATA, learn_rate=1e-3, **settings):
    nlp = spacy.blank("en")
    nlp.add_pipe(factory, config=tiny_config(name, **settings))
    examples = make_examples(nlp, data)
    optimizer = nlp.initialize(lambda: examples)
    optimizer.learn_rate = learn_rate
    return nlp, examples, optimizer


def assert_same_cats(cats_a, cats_b):
    """Equal labels and scores up to float noise (MKL kernels are not bit-exact
    across two model instances: results depend on memory alignment)."""
    assert [c.keys() for c in cats_a] == [c.keys() for c in cats_b]
    numpy.testing.assert_allclose(
        [list(c.values()) for c in cats_a], [list(c.values()) for c in cats_b], rtol=1e-5, atol=1e-6
    )


def assert_same_weights(pipe_a, pipe_b):
    state_a = pipe_a.model.shims[0].model.state_dict()
    state_b = pipe_b.model.shims[0].model.state_dict()
    assert state_a.keys() == state_b.keys()
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)


CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def write_corpus(path, data, copies=3):
    nlp = spacy.blank("en")
    db = DocBin()
    for _ in range(copies):
        for text, cats in data:
            doc = nlp.make_doc(text)
            doc.cats = cats
            db.add(doc)
    db.to_disk(path)
    return str(path)


DATA = [
    ("a great film", {"POS": 1.0, "NEG": 0.0}),
    ("excellent and fun, i love it", {"POS": 1.0, "NEG": 0.0}),
    ("a terrible movie", {"POS": 0.0, "NEG": 1.0}),
    ("boring and bad and awful", {"POS": 0.0, "NEG": 1.0}),
    ("great", {"POS": 1.0, "NEG": 0.0}),
]
