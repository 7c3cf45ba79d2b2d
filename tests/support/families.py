"""Tiny random models of every encoder family bertcat supports, built in-process from
each family's config class with a tokenizer framed the way the family's own
tokenizer frames a text (no files shipped, no downloads).

`FAMILIES` also states, independently of bertcat's encoder map, where each family
keeps its bottom layer and which of its tensors outside the layers are shared
encoder tensors or belong to the top layer: tests/layers/test_families.py checks the map
against these expectations.
"""

import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Tuple

import transformers

from . import WORDS

TF5 = int(transformers.__version__.split(".")[0]) >= 5
HIDDEN, LAYERS, HEADS, FFN = 32, 2, 2, 37
MAX_POSITIONS = 64  # wordpieces every tiny model can read

# Special tokens (in id order) and the single-sequence template of each frame style,
# as the families' own fast tokenizers produce them.
FRAMES = {
    "bert": (["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"], "[CLS] $A [SEP]"),
    "roberta": (["<s>", "<pad>", "</s>", "<unk>", "<mask>"], "<s> $A </s>"),
    "funnel": (["<pad>", "<unk>", "<cls>", "<sep>", "<mask>"], "<cls>:2 $A:0 <sep>:0"),
    "llama": (
        ["<pad>", "<unk>", "<|begin_of_text|>", "<|end_of_text|>", "<|mask|>"],
        "<|begin_of_text|> $A <|end_of_text|>",
    ),
}


@dataclass
class Family:
    """model_type (str): Hugging Face model type. config (Callable): builds the tiny
    config from (vocab size, pad id). frame (str): key of FRAMES. bottom_layer
    (str): prefix (under the base model) of the layer applied first. kinds (Dict):
    expected map kind of some tensors outside the layers. shares_layers (bool):
    whether the layers share weights. tf5_only (bool): exists only in transformers 5.
    no_dropout (Tuple[str, ...]): dropout settings the family has no equivalent for.
    """

    model_type: str
    config: Callable[[int, int], object]
    frame: str = "bert"
    bottom_layer: str = "encoder.layer.0."
    kinds: Dict[str, str] = field(default_factory=dict)
    shares_layers: bool = False
    tf5_only: bool = False
    no_dropout: Tuple[str, ...] = ()


def _bert_like(cls_name: str, offset: int = 0, **extra):
    def build(vocab: int, pad: int):
        cls = getattr(transformers, cls_name)
        return cls(
            vocab_size=vocab,
            hidden_size=HIDDEN,
            num_hidden_layers=LAYERS,
            num_attention_heads=HEADS,
            intermediate_size=FFN,
            max_position_embeddings=MAX_POSITIONS + offset,
            pad_token_id=pad,
            **extra,
        )

    return build


def _build(cls_name: str, **settings):
    def build(vocab: int, pad: int):
        return getattr(transformers, cls_name)(vocab_size=vocab, pad_token_id=pad, **settings)

    return build


FAMILIES = [
    Family("bert", _bert_like("BertConfig"), kinds={"pooler.dense.weight": "head"}),
    Family(
        "distilbert",
        _build(
            "DistilBertConfig",
            dim=HIDDEN,
            n_layers=LAYERS,
            n_heads=HEADS,
            hidden_dim=FFN,
            max_position_embeddings=MAX_POSITIONS,
        ),
        bottom_layer="transformer.layer.0.",
    ),
    Family("roberta", _bert_like("RobertaConfig", offset=2), frame="roberta"),
    Family("xlm-roberta", _bert_like("XLMRobertaConfig", offset=2), frame="roberta"),
    Family("camembert", _bert_like("CamembertConfig", offset=2), frame="roberta"),
    Family("data2vec-text", _bert_like("Data2VecTextConfig", offset=2), frame="roberta"),
    Family(
        "roberta-prelayernorm",
        _bert_like("RobertaPreLayerNormConfig", offset=2),
        frame="roberta",
        kinds={"LayerNorm.weight": "top"},
    ),
    Family(
        "xlm-roberta-xl",
        _bert_like("XLMRobertaXLConfig", offset=2),
        frame="roberta",
        kinds={"encoder.LayerNorm.weight": "top"},
    ),
    Family(
        "megatron-bert",
        _bert_like("MegatronBertConfig"),
        kinds={"encoder.ln.weight": "top"},
        no_dropout=("classifier_dropout",),
    ),
    Family(
        "albert",
        _bert_like("AlbertConfig", embedding_size=16, num_hidden_groups=1, inner_group_num=1),
        bottom_layer="encoder.albert_layer_groups.0.",
        kinds={"encoder.embedding_hidden_mapping_in.weight": "shared", "pooler.weight": "head"},
        shares_layers=True,
    ),
    Family(
        "electra", _bert_like("ElectraConfig", embedding_size=16), kinds={"embeddings_project.weight": "embeddings"}
    ),
    Family(
        "convbert",
        _bert_like("ConvBertConfig", embedding_size=16, conv_kernel_size=3),
        kinds={"embeddings_project.weight": "embeddings"},
    ),
    Family(
        "deberta",
        _bert_like(
            "DebertaConfig",
            relative_attention=True,
            position_biased_input=False,
            pos_att_type=["c2p", "p2c"],
            max_relative_positions=-1,
        ),
        kinds={"encoder.rel_embeddings.weight": "shared"},
    ),
    Family(
        "deberta-v2",  # the DeBERTa-v3 layout
        _bert_like(
            "DebertaV2Config",
            relative_attention=True,
            position_biased_input=False,
            pos_att_type=["p2c", "c2p"],
            max_relative_positions=-1,
            position_buckets=16,
            norm_rel_ebd="layer_norm",
            share_att_key=True,
        ),
        kinds={"encoder.rel_embeddings.weight": "shared", "encoder.LayerNorm.weight": "shared"},
    ),
    Family(
        "mpnet",
        _bert_like("MPNetConfig", offset=2),
        frame="roberta",
        kinds={"encoder.relative_attention_bias.weight": "shared"},
        no_dropout=("classifier_dropout",),
    ),
    Family(
        "modernbert",
        _bert_like(
            "ModernBertConfig",
            local_attention=8,
            global_attn_every_n_layers=2,
            cls_token_id=2,
            sep_token_id=3,
            bos_token_id=2,
            eos_token_id=3,
        ),
        bottom_layer="layers.0.",
        kinds={"final_norm.weight": "top"},
    ),
    Family(
        "longformer",
        _bert_like("LongformerConfig", offset=2, attention_window=[8, 8]),
        frame="roberta",
        no_dropout=("classifier_dropout",),
    ),
    Family("big_bird", _bert_like("BigBirdConfig", block_size=4, num_random_blocks=2), kinds={"pooler.weight": "head"}),
    Family(
        "funnel",
        _build(
            "FunnelConfig",
            architectures=["FunnelBaseModel"],
            block_sizes=[1, 1],
            num_decoder_layers=1,
            d_model=HIDDEN,
            n_head=HEADS,
            d_head=16,
            d_inner=FFN,
            max_position_embeddings=MAX_POSITIONS,
        ),
        frame="funnel",
        bottom_layer="encoder.blocks.0.0.",
        no_dropout=("classifier_dropout",),
    ),
    Family("ernie", _bert_like("ErnieConfig"), kinds={"pooler.dense.weight": "head"}),
    Family(
        "mobilebert",
        _bert_like(
            "MobileBertConfig",
            embedding_size=16,
            intra_bottleneck_size=16,
            true_hidden_size=16,
            num_feedforward_networks=2,
        ),
        kinds={"embeddings.embedding_transformation.weight": "embeddings"},
    ),
    # Families transformers 5 adds.
    Family(
        "eurobert",
        _bert_like("EuroBertConfig", bos_token_id=2, eos_token_id=3, mask_token_id=4),
        frame="llama",
        bottom_layer="layers.0.",
        kinds={"embed_tokens.weight": "embeddings", "norm.weight": "top"},
        tf5_only=True,
        no_dropout=("hidden_dropout", "classifier_dropout"),
    ),
    Family("gte", _bert_like("GteConfig"), frame="roberta", bottom_layer="layers.0.", tf5_only=True),
    Family("nomic_bert", _bert_like("NomicBertConfig"), bottom_layer="layers.0.", tf5_only=True),
    Family(
        "jina_embeddings_v3",
        _bert_like("JinaEmbeddingsV3Config", offset=2),
        frame="roberta",
        bottom_layer="layers.0.",
        tf5_only=True,
    ),
]
FAMILIES = [f for f in FAMILIES if TF5 or not f.tf5_only]
BY_TYPE = {f.model_type: f for f in FAMILIES}


def make_tokenizer(frame: str = "bert", model_max_length: int = 512):
    """A small uncased WordPiece tokenizer with the special tokens and
    single-sequence template of a frame style (see FRAMES)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials, template = FRAMES[frame]
    pad, unk, cls, sep, mask = specials
    pieces = list(string.ascii_lowercase + string.digits + string.punctuation)
    pieces += ["##" + c for c in string.ascii_lowercase + string.digits]
    vocab = {tok: i for i, tok in enumerate(dict.fromkeys(specials + pieces + WORDS))}
    if frame == "roberta":  # <s> <pad> </s> <unk> <mask>, as RoBERTa numbers them
        cls, pad, sep, unk, mask = specials
    backend = Tokenizer(models.WordPiece(vocab, unk_token=unk, max_input_chars_per_word=100))
    backend.normalizer = normalizers.BertNormalizer(lowercase=True)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.post_processor = processors.TemplateProcessing(
        single=template, pair=f"{template} $B:1 {sep}:1", special_tokens=[(cls, vocab[cls]), (sep, vocab[sep])]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token=unk,
        pad_token=pad,
        cls_token=cls,
        sep_token=sep,
        mask_token=mask,
        model_max_length=model_max_length,
    )
    return tokenizer


def make_family_dir(path: Path, model_type: str, seed: int = 0) -> str:
    """Save a tiny random encoder of a family with its tokenizer into `path`."""
    import torch
    from transformers import AutoModel

    family = BY_TYPE[model_type]
    torch.manual_seed(seed)
    tokenizer = make_tokenizer(family.frame)
    config = family.config(len(tokenizer), tokenizer.pad_token_id)
    AutoModel.from_config(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)
