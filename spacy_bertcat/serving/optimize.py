"""ONNX Runtime serving: replace a trained component's torch classifier by its ONNX
graph on ONNX Runtime.

``optimize_pipe`` exports the component's Hugging Face classifier (the part that maps
padded windows to window logits, and to first-token hidden states where the
aggregation needs them) with torch's ONNX exporter (serving/export.py), checks that
ONNX Runtime reproduces it, and optionally quantizes its weights to int8
(serving/quantize.py: ONNX Runtime's dynamic quantization, int8 weights per output
channel, activations quantized on the fly). Everything around it stays as it was:
the tokenizer, chunking, window batching, aggregation (in torch, a few weights),
thresholds and calibration. So an optimized pipeline is a normal pipeline:
``spacy.load``, ``nlp.pipe`` (also with ``n_process``), ``spacy package`` and the
CLI work, and it is saved as ONNX bytes (protobuf, no pickle) in the component's
model file; what it runs is layers/onnx_runtime.py's ``OnnxWindowClassifier``.

It predicts; it does not train (the fp32 weights are not kept, which is what makes
it smaller: two thirds of the size with int8 linear layers, a quarter with int8
embeddings too): train the original pipeline and optimize it again.

ONNX Runtime is an optional dependency (``pip install "spacy-bertcat[onnx]"``): the
core never imports it, an optimized pipeline needs it to load.
"""

from typing import Any, Dict, List, Optional, Sequence, cast

import numpy
import torch
from spacy.language import Language

from ..components.pipes import bertcat_components
from ..errors import Errors
from ..layers.batching import WindowBatch
from ..layers.classifier import get_shim
from ..layers.onnx_runtime import ENGINE, OnnxWindowClassifier, describe, import_onnxruntime
from ..layers.torch_model import WindowClassifier
from .export import OPSET, SAMPLE_TEXTS, eval_mode, export_onnx, json_config, plain_model, sample_batches
from .quantize import INT8_OPS, INT8_OPS_SMALLEST, quantize_int8

# fp32 ONNX Runtime must reproduce the torch model's logits to this (absolute);
# float reassociation gives ~1e-5, a wrong graph gives whole units.
EXPORT_TOLERANCE = 1e-3


def optimize_pipe(
    pipe: Any, *, int8: bool = True, check_texts: Optional[List[str]] = None, int8_ops: Sequence[str] = INT8_OPS
) -> Dict[str, Any]:
    """Replace a bertcat component's torch classifier by ONNX Runtime, in place.

    pipe (BertCat): A trained (initialized) bertcat or bertcat_multilabel component.
    int8 (bool): Quantize the weights to int8 (else the graph stays float32).
    check_texts (Optional[List[str]]): Texts on which fp32 ONNX Runtime must
        reproduce the torch model (default: built-in samples, one longer than a window).
    int8_ops (Sequence[str]): The ONNX ops whose weights int8 quantizes.
    RETURNS (Dict[str, Any]): What was made: engine, int8, versions, the fp32
        check's largest logit difference and the sizes of the graphs in bytes.
    """
    import transformers

    ort = import_onnxruntime()
    shim = get_shim(pipe.model)
    if shim.model is None:
        raise ValueError(Errors.BC017.format(name=pipe.name))
    if isinstance(shim.model, OnnxWindowClassifier):
        raise ValueError(Errors.BC066.format(name=pipe.name, runtime=describe(shim.model.runtime)))
    model = plain_model(shim)
    window = pipe.model.attrs["window"]
    texts = list(check_texts or SAMPLE_TEXTS) + [" ".join(SAMPLE_TEXTS) * (1 + window // 8)]
    batches, counts = sample_batches(pipe.model, texts)
    export_batch = max(batches, key=lambda b: b.input_ids.shape[0])
    model_type = cast(Any, model.hf_model.config).model_type
    with eval_mode(model):
        fp32 = export_onnx(model, export_batch)
        with torch.inference_mode():
            expected = model(batches, counts)
    runtime = {
        "engine": ENGINE,
        "int8": False,
        "onnxruntime_version": ort.__version__,
        "torch_version": torch.__version__,
        "transformers_version": transformers.__version__,
        "opset": OPSET,
        "hidden_size": int(cast(Any, model.hf_model.config).hidden_size),
        "num_labels": int(cast(Any, model.hf_model.config).num_labels),
    }
    config = json_config(model.hf_model.config)
    difference = _check(fp32, config, model, runtime, batches, counts, expected)
    if not difference <= EXPORT_TOLERANCE:
        reason = f"ONNX Runtime's logits differ from torch's by up to {difference:.3g}"
        raise ValueError(Errors.BC064.format(model_type=model_type, reason=reason))
    runtime["fp32_check"] = difference
    graph = fp32
    if int8:
        try:
            graph = quantize_int8(fp32, int8_ops)
        except Exception as e:  # onnx / onnxruntime.quantization raise their own
            reason = f"the int8 quantization failed ({str(e)[:300]}); `--fp32` keeps float32"
            raise ValueError(Errors.BC064.format(model_type=model_type, reason=reason)) from e
        runtime["int8"] = True
        runtime["int8_ops"] = list(int8_ops)
        # The int8 graph runs here before it is saved: the largest logit change is
        # recorded, and a graph ONNX Runtime cannot run never reaches a pipeline.
        runtime["int8_check"] = _check(graph, config, model, runtime, batches, counts, expected)
    served = OnnxWindowClassifier(graph, config, model.aggregation_name, runtime)
    served.aggregation.load_state_dict(model.aggregation.state_dict())
    shim.set_serving_model(served)
    return {**runtime, "fp32_bytes": len(fp32), "bytes": len(graph)}


def _check(
    graph: bytes,
    config: Dict[str, Any],
    model: WindowClassifier,
    runtime: Dict[str, Any],
    batches: List[WindowBatch],
    counts: List[int],
    expected: torch.Tensor,
) -> float:
    """RETURNS (float): The largest difference between the graph's document logits
    (on ONNX Runtime) and torch's, or raises BC064 if ONNX Runtime cannot run it."""
    candidate = OnnxWindowClassifier(graph, config, model.aggregation_name, runtime)
    candidate.aggregation.load_state_dict(model.aggregation.state_dict())
    try:
        with torch.inference_mode():
            found = candidate(batches, counts)
    except Exception as e:  # onnxruntime's own error types
        reason = f"ONNX Runtime cannot run the exported graph on windows of other shapes ({str(e)[:300]})"
        raise ValueError(Errors.BC064.format(model_type=config.get("model_type"), reason=reason)) from e
    return float((expected - found).abs().max())


def components_to_optimize(nlp: Language, names: Optional[List[str]]) -> List[str]:
    """RETURNS (List[str]): The named components, or every bertcat component."""
    bertcat = [n for n in nlp.pipe_names if n in bertcat_components(nlp)]
    if not names:
        if not bertcat:
            raise ValueError(Errors.BC033.format(detail=" made by bertcat or bertcat_multilabel", names=nlp.pipe_names))
        return bertcat
    for name in names:
        if name not in bertcat:
            raise ValueError(
                Errors.BC033.format(
                    detail=f" named '{name}' made by bertcat or bertcat_multilabel", names=nlp.pipe_names
                )
            )
    return list(names)


def optimize_component(nlp: Language, name: str, *, int8: bool = True, int8_embeddings: bool = False) -> Dict[str, Any]:
    """Optimize one component in place and record it in the pipeline's meta (its
    `requirements` gain onnxruntime, so `spacy package` installs it)."""
    made = optimize_pipe(nlp.get_pipe(name), int8=int8, int8_ops=INT8_OPS_SMALLEST if int8_embeddings else INT8_OPS)
    nlp.meta.setdefault("bertcat_serving", {})[name] = {k: v for k, v in made.items() if not k.endswith("bytes")}
    requirements = nlp.meta.setdefault("requirements", [])
    if not any(r.split(">")[0].split("=")[0].strip() == "onnxruntime" for r in requirements):
        requirements.append(f"onnxruntime>={made['onnxruntime_version'].split('+')[0]}")
    return made


def decisions(pipe: Any, scores: numpy.ndarray) -> numpy.ndarray:
    """RETURNS (numpy.ndarray): 0/1 decisions: argmax for exclusive classes, the
    per-label thresholds for multi-label."""
    if getattr(pipe, "exclusive", True):
        out = numpy.zeros_like(scores)
        out[numpy.arange(len(scores)), scores.argmax(1)] = 1
        return out
    thresholds = numpy.asarray([pipe.thresholds[label] for label in pipe.labels], dtype="f")
    return (scores >= thresholds).astype("f")


def accuracy(pipe: Any, scores: numpy.ndarray, gold: numpy.ndarray, mask: numpy.ndarray) -> float:
    """RETURNS (float): Accuracy (exclusive classes, docs with a gold class) or
    micro-F1 (multi-label) of the decisions."""
    predicted = decisions(pipe, scores)
    if getattr(pipe, "exclusive", True):
        rows = mask.any(1) & (gold.sum(1) > 0)
        return float((predicted[rows].argmax(1) == gold[rows].argmax(1)).mean()) if rows.any() else float("nan")
    tp = float((predicted * gold * mask).sum())
    fp = float((predicted * (1 - gold) * mask).sum())
    fn = float(((1 - predicted) * gold * mask).sum())
    return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else float("nan")
