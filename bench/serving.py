"""Serving on CPU: the optimized pipelines of `spacy-bertcat optimize` (ONNX Runtime,
float32 and int8) against the original (torch float32) on AG News, SST-2 and BBC
News: accuracy on the whole test split, documents per second of `nlp.pipe` (batch
32) over it, peak memory of the serving process and size on disk.

The models are bench/calibration.py's (all-MiniLM-L6-v2 fine-tuned with the shipped
configs; BBC News in sliding windows), trained once and cached in --work-dir. Each
variant is optimized from the same model-best, then loaded and measured in its own
process (so peak memory is the serving process's own, not the export's).

    python bench/serving.py [--datasets ag_news,sst2,bbc_news] [--work-dir DIR]
"""

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Dict, List

sys.path.insert(0, str(Path(__file__).parent))
from calibration import SMOKE_BUDGET, budget, smoke_work_dir, splits, train_model  # noqa: E402
from common import (  # noqa: E402
    DEFAULT_DATA,
    command_line,
    in_child,
    minilm_path,
    parse_args,
    peak_rss_mb,
    smoke_skips,
    write_results,
)

VARIANTS = {
    # name: optimize_pipe settings (None: the original pipeline)
    "torch float32 (original)": None,
    "onnxruntime float32": {"int8": False},
    "onnxruntime int8": {"int8": True},  # the default: linear layers in int8
    "onnxruntime int8 (int8 embeddings)": {"int8": True, "int8_ops": ["MatMul", "Gather"]},
}
# --smoke: every variant on SST-2 (head) and BBC News (sliding windows), the models
# trained as bench/calibration.py's smoke run trains them (or found in --work-dir,
# where bench/smoke.py points both), measured in this process (in_child inline).
SMOKE = {"datasets": "sst2,bbc_news", "work_dir": None}


def make_variant(model_path: Path, settings: Dict, target: Path) -> Path:
    import spacy

    from spacy_bertcat.cli._util import save_pipeline
    from spacy_bertcat.serving import optimize_pipe

    if (target / "meta.json").exists():
        return target
    nlp = spacy.load(model_path)
    optimize_pipe(nlp.get_pipe("bertcat"), **settings)
    save_pipeline(nlp, target)
    return target


def measure(spec: Dict) -> Dict:
    import numpy
    import spacy

    nlp = spacy.load(spec["model"])
    texts, gold = spec["texts"], spec["gold"]
    list(nlp.pipe(texts[:32], batch_size=32))  # warm up (and make the session)
    start = time.perf_counter()
    docs = list(nlp.pipe(texts, batch_size=spec["batch_size"]))
    seconds = time.perf_counter() - start
    predicted = [max(doc.cats, key=doc.cats.get) for doc in docs]
    scores = numpy.asarray([[doc.cats[label] for label in spec["labels"]] for doc in docs])
    return {
        "accuracy": float(numpy.mean([p == g for p, g in zip(predicted, gold)])),
        "docs_per_s": len(texts) / seconds,
        "peak_mb": peak_rss_mb(),
        "scores": scores.tolist(),
    }


def disk_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/bertcat-calibration"))
    parser.add_argument("--model", default=None, help="model directory (default: the packaged MiniLM)")
    parser.add_argument("--datasets", default="ag_news,sst2,bbc_news")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--name", default="serving")
    args = parse_args(parser, argv, SMOKE)
    if args.child:
        print(json.dumps(measure(json.loads(Path(args.child).read_text()))))
        return
    import numpy

    smoke_work_dir(args)
    args.model = args.model or minilm_path()
    variants = [
        v for v in args.variants.split(",") if VARIANTS[v] is None or not smoke_skips(args, v, "onnxruntime", "onnx")
    ]
    rows: List[Dict] = []
    for name in args.datasets.split(","):
        train, dev, _, test = splits(
            name, args.data_dir, budget(name, args)[1], args.seed, SMOKE_BUDGET["eval"] if args.smoke else None
        )
        labels = sorted({label for _, gold in train + dev + test for label in gold})
        model_path = train_model(name, args, train, dev, labels)
        texts, gold = [t for t, _ in test], [g[0] for _, g in test]
        reference = None
        for variant in variants:
            settings = VARIANTS[variant]
            slug = variant.replace(" ", "_").replace("(", "").replace(")", "")
            path = (
                model_path
                if settings is None
                else make_variant(model_path, settings, args.work_dir / name / f"serving-{slug}")
            )
            result = in_child(
                __file__,
                {"model": str(path), "texts": texts, "gold": gold, "labels": labels, "batch_size": args.batch_size},
                inline=args.smoke,
            )
            scores = numpy.asarray(result.pop("scores"))
            reference = reference or {**result, "scores": scores}
            row = {
                "dataset": name,
                "n_test": len(texts),
                "variant": variant,
                **result,
                "accuracy_change": 100 * (result["accuracy"] - reference["accuracy"]),
                "speed_vs_original": result["docs_per_s"] / reference["docs_per_s"],
                "same_decisions": float((scores.argmax(1) == reference["scores"].argmax(1)).mean()),
                "max_score_difference": float(numpy.abs(scores - reference["scores"]).max()),
                "disk_mb": disk_mb(path),
            }
            print(json.dumps(row), flush=True)
            rows.append(row)
    command = command_line("serving.py", argv)
    notes = (
        "all-MiniLM-L6-v2 fine-tuned as in bench/calibration.py (AG News, SST-2: head truncation at 128 wordpieces; "
        "BBC News: configs/bbc.cfg, sliding windows of 128 wordpieces, up to 8 per article in prediction), optimized "
        "with spacy_bertcat.serving.optimize_pipe (what `spacy-bertcat optimize` runs), measured on the whole test "
        "split in a fresh process per row: accuracy (points change against the original in accuracy_change), "
        f"docs/s of nlp.pipe at batch {args.batch_size} after a warm-up batch, peak RSS of that process, the "
        "pipeline's size on disk, and agreement with the original (share of equal decisions, largest change of a "
        "score). int8: ONNX Runtime dynamic quantization, int8 weights per output channel of the linear layers "
        "(MatMul), the default of `spacy-bertcat optimize`; 'int8 embeddings' quantizes the embedding tables (Gather) "
        "too (--int8-embeddings)."
    )
    write_results(
        args.name,
        command,
        rows,
        [
            "dataset",
            "n_test",
            "variant",
            "accuracy",
            "accuracy_change",
            "docs_per_s",
            "speed_vs_original",
            "same_decisions",
            "max_score_difference",
            "peak_mb",
            "disk_mb",
        ],
        notes,
        results_dir=args.results_dir,
    )


if __name__ == "__main__":
    main()
