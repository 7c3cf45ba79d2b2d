"""`explain`: token attributions of a pipeline's bertcat component on the documents
of a file, as one HTML page (see spacy_bertcat/explain/)."""

from pathlib import Path
from typing import Optional

from wasabi import msg

from ..data.atomic import check_output_file
from ..explain.files import explain_file
from ._util import Arg, Opt, app, load_pipeline, progress, run_check


@app.command("explain")
def explain_cli(
    # fmt: off
    model: str = Arg(..., help="Pipeline package name or path"),
    data_path: Path = Arg(
        ...,
        help="Documents: .spacy, .jsonl/.csv/.tsv (text, labels optional) or a text file",
        exists=True,
        dir_okay=False,
    ),
    output: Path = Opt(Path("explain.html"), "--output", "-o", help="The HTML page to write (new, unless --overwrite)"),
    component: Optional[str] = Opt(
        None, "--component", "-C", help="The bertcat component to explain (default: the first)"
    ),
    label: Optional[str] = Opt(
        None, "--label", "-L", help="The label to explain (default: each document's predicted label)"
    ),
    limit: int = Opt(20, "--limit", "-n", help="Explain the first N documents with text", min=1),
    method: Optional[str] = Opt(
        None,
        "--method",
        "-m",
        help="integrated_gradients (default), gradient_x_input or occlusion (the default of an optimized pipeline)",
    ),
    n_steps: int = Opt(20, "--n-steps", help="Steps of integrated gradients", min=1),
    text_field: str = Opt("text", "--text-field", "-t", help="Text field of JSONL/CSV data"),
    overwrite: bool = Opt(False, "--overwrite", help="Replace OUTPUT if it exists"),
    gpu_id: int = Opt(-1, "--gpu-id", "-g", help="GPU ID or -1 for CPU"),
    # fmt: on
):
    """
    Explain a text classifier's decisions: for each of the first documents of
    DATA, which tokens raised or lowered the score of its predicted label (or
    --label), as attributions on the document's own tokens, shaded in one HTML
    page in displaCy's style (blue: for the label, orange: against). Needs
    captum: pip install "spacy-bertcat[explain]".
    """
    run_check(
        lambda: check_output_file(
            output,
            inputs=[Path(model), data_path],
            overwrite=overwrite,
            command="explain --output",
            example="explain.html",
        )
    )
    nlp = load_pipeline(model, gpu_id)
    try:
        result = explain_file(
            nlp,
            data_path,
            output,
            component=component,
            label=label,
            limit=limit,
            method=method,
            n_steps=n_steps,
            text_field=text_field,
            overwrite=overwrite,
            inputs=[Path(model)],
            progress=lambda docs, total: progress(docs, total=total, desc="Explaining"),
        )
    except (ValueError, ImportError) as e:
        msg.fail(str(e), exits=1)
    msg.good(
        f"Explained {result.n_docs} document(s) with {result.method} in {result.seconds:.1f} s "
        f"({result.seconds / max(result.n_docs, 1):.2f} s each): {result.output}"
    )
