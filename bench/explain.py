"""Explanations: how faithful each attribution method is, and what it costs.

For each test document (a seeded sample) and the label the model predicts, every
method ranks the document's spaCy tokens (signed attribution, highest first), and the
ranking is scored as ERASER (DeYoung et al., 2020) and ferret define it:

- comprehensiveness: p(label | doc) - p(label | doc without its top k% tokens), higher
  is better (the tokens the method names mattered);
- sufficiency: p(label | doc) - p(label | only its top k% tokens), lower is better
  (they alone keep the score);

each as the AOPC, the mean over k = 1, 5, 10, 20% (at least one token). Removing a
token = replacing each of its wordpieces by [MASK] in every window that reads it
(the length and the windows stay as they were; the baseline of integrated gradients
is the same all-[MASK] text). Scores are the component's own: windows, aggregation
and activation as in prediction. Baselines: a random ranking (seeded) and the
attention weights of the last layer from the first token ([CLS], mean over heads,
summed over windows). Integrated gradients also reports its completeness error.

Cost: seconds per document per method (explaining only), beside one plain
prediction of the same document, with the document's wordpieces and windows, so
growth with length shows. The machine is shared: read ratios, not absolute seconds.

    python bench/explain.py [--datasets sst2,ag_news,bbc_news] [--n-docs 150] [--n-long 24]
"""

import argparse
import math
import random
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Sequence

import numpy

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import DEFAULT_DATA, command_line, parse_args, read_jsonl, write_results  # noqa: E402

LEVELS = (0.01, 0.05, 0.10, 0.20)
METHODS = ("integrated_gradients", "gradient_x_input", "occlusion")
BASELINES = ("random", "attention")
LONG = {"bbc_news"}  # read in sliding windows
SMOKE = {"datasets": "sst2,bbc_news", "n_docs": 3, "n_long": 2, "n_steps": 4}


def attention_ranking(pipe, inputs, doc) -> numpy.ndarray:
    """Last-layer attention from the first token, mean over heads, per token."""
    import torch

    from spacy_bertcat.explain.attribute import to_tokens
    from spacy_bertcat.layers.classifier import get_shim

    hf = get_shim(pipe.model).hf_model
    ids, mask = inputs.input_ids[0], inputs.attention_mask[0]
    with torch.no_grad():
        out = hf(input_ids=ids, attention_mask=mask, output_attentions=True)
    weights = out.attentions[-1][:, :, 0, :].mean(dim=1).float().cpu().numpy()
    return to_tokens(weights * (inputs.positions >= 0), inputs, doc)


def removal_scores(pipe, inputs, doc, label_index: int, rankings: Dict[str, numpy.ndarray]) -> Dict[str, Any]:
    """Comprehensiveness and sufficiency per level of each ranking, in one batch."""
    import torch

    from spacy_bertcat.explain.attribute import BUDGET, ScoreFunction, _args, _baseline_id, wordpiece_shares
    from spacy_bertcat.layers.classifier import get_shim

    token_of_piece = numpy.full(len(inputs.offsets), -1, dtype="int64")
    for piece, shares in enumerate(wordpiece_shares(inputs.offsets, doc)):
        if shares:
            token_of_piece[piece] = max(shares, key=lambda s: s[1])[0]
    text = inputs.positions >= 0
    token_at = numpy.where(text, token_of_piece[numpy.maximum(inputs.positions, 0)], -1)
    eligible = sorted(set(token_at[token_at >= 0].tolist()))
    masked_id = _baseline_id(get_shim(pipe.model).tokenizer)
    ids = inputs.input_ids[0].cpu().numpy()
    variants, keys = [], []
    for name, values in rankings.items():
        order = [t for t in numpy.argsort(-values[eligible], kind="stable")]
        ranked = [eligible[i] for i in order]
        for level in LEVELS:
            k = max(1, math.ceil(level * len(ranked)))
            top = numpy.isin(token_at, ranked[:k])
            variants.append(numpy.where(top, masked_id, ids))  # comprehensiveness: top removed
            keys.append((name, level, "comp"))
            variants.append(numpy.where(text & ~top, masked_id, ids))  # sufficiency: only top kept
            keys.append((name, level, "suff"))
    function = ScoreFunction(pipe, label_index, use_calibration=True, gradients=False)
    extra = _args(inputs)[1:]
    n_windows, length = ids.shape
    per_call = max(1, BUDGET // (n_windows * length))
    scores: List[float] = []
    with torch.no_grad():
        full = float(function(*_args(inputs))[0])
        for start in range(0, len(variants), per_call):
            chunk = torch.as_tensor(numpy.stack(variants[start : start + per_call]), device=inputs.input_ids.device)
            k = chunk.shape[0]
            scores += function(chunk, *(e.expand(k, -1, -1) for e in extra)).tolist()
    out: Dict[str, Any] = {}
    for (name, _level, kind), score in zip(keys, scores):
        out.setdefault(name, {"comp": [], "suff": []})[kind].append(full - score)
    return {name: {kind: float(numpy.mean(v)) for kind, v in d.items()} for name, d in out.items()}


def run_dataset(name: str, args) -> Dict[str, Any]:
    import warnings

    import spacy

    from spacy_bertcat.components.pipes import bertcat_components
    from spacy_bertcat.explain.attribute import doc_inputs, explain_doc

    source = args.model_for.get(name, name)
    nlp = spacy.load(args.model_dir(source))
    pipe = list(bertcat_components(nlp).values())[0]
    if name in LONG and pipe.model.attrs["chunking"].name != "sliding_window":
        # Another dataset's model read in sliding windows (as configs/bbc.cfg predicts).
        from spacy_bertcat.layers.chunking import configure_sliding_window_v1

        pipe.model.attrs["chunking"] = configure_sliding_window_v1(max_windows_predict=8)
    n = args.n_long if name in LONG else args.n_docs
    records = read_jsonl(Path(args.data_dir) / name / "test.jsonl", limit=n, seed=args.seed)
    rng = numpy.random.default_rng(args.seed)
    per_doc: List[Dict[str, Any]] = []
    started = time.perf_counter()
    for text, _gold in records:
        if args.time_budget and time.perf_counter() - started > args.time_budget and len(per_doc) >= 2:
            print(f"{name}: time budget spent after {len(per_doc)} of {len(records)} docs", flush=True)
            break
        doc = nlp.make_doc(text)
        start = time.perf_counter()
        predicted = nlp(text)
        predict_s = time.perf_counter() - start
        label = max(predicted.cats, key=predicted.cats.get)
        inputs = doc_inputs(pipe, text)
        row: Dict[str, Any] = {
            "wordpieces": len(inputs.offsets),
            "windows": inputs.n_windows,
            "tokens": len(doc),
            "predict_s": predict_s,
        }
        rankings: Dict[str, numpy.ndarray] = {}
        for method in args.methods:
            start = time.perf_counter()
            with warnings.catch_warnings():  # BCW041: the completeness error is recorded below
                warnings.simplefilter("ignore")
                result = explain_doc(pipe, doc, label, method=method, n_steps=args.n_steps, store=False)
            row[f"{method}_s"] = time.perf_counter() - start
            rankings[method] = numpy.asarray(result.attributions)
            if method == "integrated_gradients":
                change = result.score - (result.baseline_score or 0.0)
                row["ig_delta"] = abs(result.delta or 0.0)
                row["ig_delta_share"] = abs(result.delta or 0.0) / max(abs(change), 1e-6)
        rankings["random"] = rng.permutation(len(doc)).astype("f8")
        start = time.perf_counter()
        rankings["attention"] = attention_ranking(pipe, inputs, doc)
        row["attention_s"] = time.perf_counter() - start
        row["faithfulness"] = removal_scores(pipe, inputs, doc, pipe.labels.index(label), rankings)
        per_doc.append(row)
        if len(per_doc) % 5 == 0:
            print(f"{name}: {len(per_doc)} of {len(records)} docs", flush=True)
    chunking = pipe.model.attrs["chunking"]
    return {
        "docs": per_doc,
        "model": args.model_dir(source),
        "chunking": chunking.name,
        "aggregation": chunking.aggregation,
        "window": pipe.model.attrs["window"],
    }


def summarize(name: str, result: Dict[str, Any], methods: Sequence[str], default: str) -> List[Dict[str, Any]]:
    docs = result["docs"]
    rows = []
    for method in [*methods, *BASELINES]:
        comp = numpy.asarray([d["faithfulness"][method]["comp"] for d in docs])
        suff = numpy.asarray([d["faithfulness"][method]["suff"] for d in docs])
        seconds = numpy.asarray([d.get(f"{method}_s", numpy.nan) for d in docs])
        predict = numpy.asarray([d["predict_s"] for d in docs])
        row = {
            "dataset": name,
            "method": method,
            "docs": len(docs),
            "comp_aopc": float(comp.mean()),
            "comp_sd": float(comp.std(ddof=1)) if len(comp) > 1 else 0.0,
            "suff_aopc": float(suff.mean()),
            "suff_sd": float(suff.std(ddof=1)) if len(suff) > 1 else 0.0,
            "s_per_doc": float(numpy.nanmean(seconds)) if method != "random" else 0.0,
            "x_predict": float(numpy.nanmean(seconds / predict)) if method != "random" else 0.0,
        }
        if method == "integrated_gradients":
            row["ig_delta_share_median"] = float(numpy.median([d["ig_delta_share"] for d in docs]))
        if method != default:
            base_c = numpy.asarray([d["faithfulness"][default]["comp"] for d in docs]) - comp
            base_s = suff - numpy.asarray([d["faithfulness"][default]["suff"] for d in docs])
            half = 1.96 / math.sqrt(max(len(docs), 1))
            row["default_comp_margin"] = (
                f"{base_c.mean():+.3f} ± {half * base_c.std(ddof=1) if len(docs) > 1 else 0:.3f}"
            )
            row["default_suff_margin"] = (
                f"{base_s.mean():+.3f} ± {half * base_s.std(ddof=1) if len(docs) > 1 else 0:.3f}"
            )
        rows.append(row)
    return rows


def growth(name: str, result: Dict[str, Any], methods: Sequence[str]) -> List[Dict[str, Any]]:
    """Seconds per document by window count (long documents) or length tercile."""
    docs = result["docs"]
    key = "windows" if any(d["windows"] > 1 for d in docs) else "wordpieces"
    values = sorted({d[key] for d in docs})
    if key == "wordpieces" and len(values) > 3:
        edges = numpy.quantile([d[key] for d in docs], [1 / 3, 2 / 3])
        groups: Dict[str, List[Dict[str, Any]]] = {}
        for d in docs:
            tercile = int(numpy.searchsorted(edges, d[key], side="right"))
            groups.setdefault(("short", "middle", "long")[tercile], []).append(d)
    else:
        groups = {}
        for d in docs:
            groups.setdefault(f"{d[key]} window(s)" if key == "windows" else str(d[key]), []).append(d)
    rows = []
    for group, members in groups.items():
        row = {
            "dataset": name,
            "group": group,
            "docs": len(members),
            "wordpieces": float(numpy.mean([d["wordpieces"] for d in members])),
            "windows": float(numpy.mean([d["windows"] for d in members])),
            "predict_s": float(numpy.mean([d["predict_s"] for d in members])),
        }
        for method in methods:
            row[f"{method}_s"] = float(numpy.mean([d[f"{method}_s"] for d in members]))
        rows.append(row)
    return sorted(rows, key=lambda r: (r["dataset"], r["wordpieces"]))


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def smoke_pipeline(name: str, args) -> str:
    """A tiny random pipeline over the smoke model (no training), saved for
    spacy.load: the benchmark's code path, not its numbers."""
    import spacy

    folder = args.smoke_dir / f"{name}-model"
    if folder.exists():
        return str(folder)
    from spacy.training import Example

    records = read_jsonl(Path(args.data_dir) / name / "train.jsonl", limit=8, seed=args.seed)
    labels = sorted({label for _, gold in records for label in gold})
    nlp = spacy.blank("en")
    chunking = (
        {"@misc": "spacy-bertcat.sliding_window.v1", "max_windows": 2}
        if name in LONG
        else {"@misc": "spacy-bertcat.head.v1"}
    )
    nlp.add_pipe("bertcat", config={"model": {"name": args.model, "max_length": 64, "chunking": chunking}})
    examples = [
        Example.from_dict(nlp.make_doc(t), {"cats": {label: float(label in g) for label in labels}}) for t, g in records
    ]
    nlp.initialize(lambda: examples)
    nlp.to_disk(folder)
    return str(folder)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", default="sst2,ag_news,bbc_news")
    parser.add_argument("--data-dir", default=str(DEFAULT_DATA))
    parser.add_argument("--work-dir", default="/work/bench-cache/calibration", help="holds <dataset>/model-best")
    parser.add_argument("--n-docs", type=int, default=150, help="documents per short-text set")
    parser.add_argument("--n-long", type=int, default=24, help="documents of a long-document set")
    parser.add_argument("--n-steps", type=int, default=20, help="steps of integrated gradients")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument(
        "--model-for",
        default="",
        help="DATASET=OTHER,...: explain DATASET with OTHER's model (read in sliding windows for a long set)",
    )
    parser.add_argument(
        "--time-budget",
        type=float,
        default=None,
        help="seconds per dataset: start no document after them (the results say how many were done)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--name", default="explain", help="results file name")
    parser.add_argument(
        "--merge",
        default="",
        help="NAME,...: only combine earlier results files (one run per dataset) into --name",
    )
    parser.add_argument("--model", default=None, help=argparse.SUPPRESS)  # the smoke run's encoder
    args = parse_args(parser, argv, SMOKE)
    args.methods = [m for m in args.methods.split(",") if m]
    args.model_for = dict(pair.split("=", 1) for pair in args.model_for.split(",") if pair)
    default = args.methods[0]
    if args.smoke:
        args.model_dir = lambda name: smoke_pipeline(name, args)
    else:
        args.model_dir = lambda name: str(Path(args.work_dir) / name / "model-best")
    rows, growth_rows, extra = [], [], {}
    if args.merge:
        import json

        from common import RESULTS

        commands = []
        for part in args.merge.split(","):
            earlier = json.loads((Path(args.results_dir or RESULTS) / f"{part}.json").read_text())
            rows += earlier["rows"]
            growth_rows += earlier.get("growth", [])
            extra.update(earlier.get("per_doc", {}))
            commands.append(earlier["command"])
        args.datasets = ""
    for name in [d for d in args.datasets.split(",") if d]:
        start = time.perf_counter()
        result = run_dataset(name, args)
        print(f"{name}: {len(result['docs'])} docs in {time.perf_counter() - start:.0f} s", flush=True)
        rows += summarize(name, result, args.methods, default)
        growth_rows += growth(name, result, args.methods)
        extra[name] = result
    command = command_line("explain.py", argv)
    columns = [
        "dataset",
        "method",
        "docs",
        "comp_aopc",
        "comp_sd",
        "suff_aopc",
        "suff_sd",
        "default_comp_margin",
        "default_suff_margin",
        "ig_delta_share_median",
        "s_per_doc",
        "x_predict",
    ]
    growth_columns = ["dataset", "group", "docs", "wordpieces", "windows", "predict_s"] + [
        f"{m}_s" for m in args.methods
    ]
    notes = (
        "comp_aopc: comprehensiveness (higher is better), suff_aopc: sufficiency (lower is better), "
        "AOPC over removing / keeping the top 1, 5, 10, 20% of tokens (removal: [MASK] per wordpiece); "
        "sd: spread over documents; default_*_margin: the first method's advantage over this row "
        "(paired, mean ± 95% interval; positive: the default is better); ig_delta_share_median: "
        "|completeness error| / |score - baseline score|; s_per_doc: seconds explaining one document "
        "(contended 2-core machine), x_predict: that over one plain prediction of the same document.\n\n"
        "Cost by length (seconds per document):\n\n"
        + "\n".join(
            ["| " + " | ".join(growth_columns) + " |", "|" + "---|" * len(growth_columns)]
            + ["| " + " | ".join(_cell(r.get(c)) for c in growth_columns) + " |" for r in growth_rows]
        )
    )
    if args.merge:
        command = " && ".join(commands) + " && " + command
    write_results(
        args.name,
        command,
        rows,
        columns,
        notes=notes,
        extra={"growth": growth_rows, "per_doc": extra, "levels": list(LEVELS)},
        results_dir=args.results_dir,
    )
    random.seed(args.seed)


if __name__ == "__main__":
    main()
