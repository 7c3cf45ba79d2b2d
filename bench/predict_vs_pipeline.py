"""Prediction speed: `nlp.pipe` vs `transformers.pipeline("text-classification")`.

Both run the same weights (the packaged MiniLM with a classification head, or any
model directory via --model), at several batch sizes, on short texts (AG News) and
long documents (BBC News): bertcat with head truncation (the pipeline's work) and with
sliding windows (reads every wordpiece), the pipeline with truncation; and the
pipelines `spacy-bertcat optimize` makes of the same bertcat pipelines (ONNX Runtime,
int8 and float32: --serving), made once and loaded from disk like a deployment
does. Each measurement runs in its own process, so peak memory is its own. Also a
scaling curve: time per document as documents grow from 100 to 20,000 words
(sliding windows).

    python bench/predict_vs_pipeline.py [--device cuda] [--model DIR] [--serving int8,fp32]
"""

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import (  # noqa: E402
    DEFAULT_DATA,
    command_line,
    in_child,
    minilm_path,
    parse_args,
    peak_rss_mb,
    read_jsonl,
    smoke_skips,
    write_results,
)

# --smoke: a few texts, one batch size, int8 serving (fp32 is the same path without
# quantization), one scaling row; measurements run in this process (in_child inline).
SMOKE = {
    "short": 8,
    "long": 4,
    "batch_sizes": "4",
    "max_length": 64,
    "scaling": "1000",
    "scaling_words": 2000,
    "serving": "int8",
}


def build_pipeline(model: str, labels, chunking: dict, max_length: int, device: str):
    import spacy
    from spacy.training import Example

    if device == "cuda":
        spacy.require_gpu(0)
    nlp = spacy.blank("en")
    nlp.add_pipe("bertcat", config={"model": {"name": model, "max_length": max_length, "chunking": chunking}})
    examples = [
        Example.from_dict(nlp.make_doc("x"), {"cats": {label: float(i == 0) for i, label in enumerate(labels)}})
    ]
    nlp.initialize(lambda: examples)
    return nlp


def measure(spec: dict) -> dict:
    """Run one measurement (in a child process); returns docs/s and peak memory."""
    import torch

    texts = spec["texts"]
    labels = ["a", "b", "c", "d"]
    chunking = {"@misc": f"spacy-bertcat.{spec['chunking']}.v1"}
    if spec.get("path"):  # an optimized pipeline, saved by the parent
        import spacy

        nlp = spacy.load(spec["path"])
    else:
        nlp = build_pipeline(spec["model"], labels, chunking, spec["max_length"], spec["device"])
    if spec["system"] == "pipeline":
        from transformers import AutoTokenizer, pipeline

        hf_model = nlp.get_pipe("bertcat").model.shims[0].hf_model
        tokenizer = AutoTokenizer.from_pretrained(spec["model"])
        classify = pipeline("text-classification", model=hf_model, tokenizer=tokenizer, device=hf_model.device)
        run = lambda batch: classify(
            batch, batch_size=spec["batch_size"], truncation=True, max_length=spec["max_length"], top_k=None
        )
    else:
        run = lambda batch: [doc.cats for doc in nlp.pipe(batch, batch_size=spec["batch_size"])]
    run(texts[:8])  # warm up
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    outputs = run(texts)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    assert len(outputs) == len(texts)
    memory = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else peak_rss_mb()
    return {
        "docs_per_s": len(texts) / seconds,
        "seconds": seconds,
        "peak_mb": memory,
        "words_per_s": sum(len(t.split()) for t in texts) / seconds,
    }


def make_optimized(args, chunking: str, variant: str, tmp: Path) -> Path:
    """Save the bertcat pipeline of this chunking optimized (int8 or fp32) under tmp."""
    from spacy_bertcat.serving import optimize_pipe

    nlp = build_pipeline(
        args.model, ["a", "b", "c", "d"], {"@misc": f"spacy-bertcat.{chunking}.v1"}, args.max_length, "cpu"
    )
    optimize_pipe(nlp.get_pipe("bertcat"), int8=variant == "int8")
    path = tmp / f"{chunking}-{variant}"
    nlp.to_disk(path)
    return path


def synthetic_doc(words, n: int, rng: random.Random) -> str:
    return " ".join(rng.choice(words) for _ in range(n))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--model", default=None)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--short", type=int, default=512, help="AG News test texts")
    parser.add_argument("--long", type=int, default=128, help="BBC News test articles")
    parser.add_argument("--batch-sizes", default="1,32,128")
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--scaling", default="100,500,1000,2000,5000,10000,20000")
    parser.add_argument(
        "--scaling-words", type=int, default=40_000, help="words per scaling row (documents of n words each)"
    )
    parser.add_argument("--serving", default="int8,fp32", help="optimized variants to measure ('' for none)")
    parser.add_argument("--name", default=None)
    args = parse_args(parser, argv, SMOKE)
    if args.child:
        print(json.dumps(measure(json.loads(Path(args.child).read_text()))))
        return
    args.model = args.model or minilm_path()
    command = command_line("predict_vs_pipeline.py", argv)
    data = {
        "short": [t for t, _ in read_jsonl(args.data_dir / "ag_news" / "test.jsonl", limit=args.short)],
        "long": [t for t, _ in read_jsonl(args.data_dir / "bbc_news" / "test.jsonl", limit=args.long)],
    }
    systems = [("pipeline", "head", None), ("bertcat", "head", None), ("bertcat", "sliding_window", None)]
    serving = [v for v in args.serving.split(",") if v] if args.device == "cpu" else []  # CPU serving only
    if serving and smoke_skips(args, "the optimized (ONNX Runtime) pipelines", "onnxruntime", "onnx"):
        serving = []
    systems += [("bertcat", chunking, variant) for variant in serving for chunking in ("head", "sliding_window")]
    tmp = Path(tempfile.mkdtemp(prefix="bertcat-serving-", dir=args.smoke_dir))
    saved = {
        (chunking, variant): make_optimized(args, chunking, variant, tmp) for _, chunking, variant in systems if variant
    }
    rows = []
    for kind, texts in data.items():
        for batch_size in [int(b) for b in args.batch_sizes.split(",")]:
            reference, fp32 = None, {}
            for system, chunking, variant in systems:
                if kind == "short" and chunking == "sliding_window":
                    continue  # identical to head on texts shorter than a window
                spec = {
                    "system": system,
                    "chunking": chunking,
                    "texts": texts,
                    "batch_size": batch_size,
                    "model": args.model,
                    "max_length": args.max_length,
                    "device": args.device,
                    "path": str(saved[chunking, variant]) if variant else None,
                }
                result = in_child(__file__, spec, inline=args.smoke)
                reference = reference or result["docs_per_s"]
                if system == "bertcat" and variant is None:
                    fp32[chunking] = result["docs_per_s"]
                name = system if system == "pipeline" else f"bertcat ({chunking})"
                row = {
                    "data": kind,
                    "batch_size": batch_size,
                    "system": name + (f", onnxruntime {variant}" if variant else ""),
                    **result,
                    "speed_vs_pipeline": result["docs_per_s"] / reference,
                    "speed_vs_bertcat": result["docs_per_s"] / fp32[chunking] if chunking in fp32 else None,
                }
                print(json.dumps(row), flush=True)
                rows.append(row)
    rng = random.Random(0)
    vocabulary = " ".join(data["long"]).split()
    for n_words in [int(n) for n in args.scaling.split(",") if n]:
        texts = [synthetic_doc(vocabulary, n_words, rng) for _ in range(max(1, args.scaling_words // n_words))]
        spec = {
            "system": "bertcat",
            "chunking": "sliding_window",
            "texts": texts,
            "batch_size": 32,
            "model": args.model,
            "max_length": args.max_length,
            "device": args.device,
        }
        result = in_child(__file__, spec, inline=args.smoke)
        row = {
            "data": f"scaling {n_words} words",
            "batch_size": 32,
            "system": "bertcat (sliding_window)",
            **result,
            "ms_per_1000_words": 1000 * 1000 / result["words_per_s"],
        }
        print(json.dumps(row), flush=True)
        rows.append(row)
    name = args.name or f"predict_vs_pipeline_{args.device}"
    notes = (
        "short: AG News test texts; long: BBC News test articles (37% exceed 512 wordpieces). "
        "pipeline = transformers.pipeline('text-classification', truncation=True) on the same model object; "
        "bertcat (head) reads the same wordpieces; bertcat (sliding_window) reads all of them (more work). "
        f"speed_vs_pipeline = docs/s over the pipeline's at the same batch size; speed_vs_bertcat = over the "
        "float32 bertcat pipeline's with the same chunking (the optimized rows: `spacy-bertcat optimize` of "
        "that pipeline, loaded from disk; ONNX Runtime on the CPU). peak_mb: "
        f"{'torch.cuda.max_memory_allocated' if args.device == 'cuda' else 'peak RSS of the measuring process'}. "
        "Scaling rows: synthetic documents of n words; ms_per_1000_words should stay flat (linear time)."
    )
    write_results(
        name,
        command,
        rows,
        [
            "data",
            "batch_size",
            "system",
            "docs_per_s",
            "speed_vs_pipeline",
            "speed_vs_bertcat",
            "peak_mb",
            "ms_per_1000_words",
        ],
        notes,
        results_dir=args.results_dir,
    )


if __name__ == "__main__":
    main()
