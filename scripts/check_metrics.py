"""Print an evaluation report's test scores beside its baseline; fail below a minimum."""

from pathlib import Path

import srsly
import typer
from wasabi import msg


def main(
    report_path: Path = typer.Argument(
        ..., help="report.json written by `python -m spacy_bertcat evaluate`", exists=True
    ),
    min_accuracy: float = typer.Option(0.0, "--min-accuracy", help="Fail if the accuracy is lower"),
) -> None:
    """Check the accuracy of a report."""
    report = srsly.read_json(report_path)
    summary = report["summary"]
    rows = [("this model", summary)]
    if "baseline" in report:
        rows.append((report["baseline"].get("name", "baseline"), report["baseline"]["summary"]))
    msg.table(
        [(name, s["n_docs"], f"{100 * s['accuracy']:.2f}", f"{100 * s['macro_f']:.2f}") for name, s in rows],
        header=("", "docs", "accuracy", "macro F1"),
        aligns=("l", "r", "r", "r"),
    )
    if summary["accuracy"] < min_accuracy:
        msg.fail(
            f"Test accuracy {100 * summary['accuracy']:.2f}% is below the required {100 * min_accuracy:.2f}%", exits=1
        )
    msg.good(f"Test accuracy {100 * summary['accuracy']:.2f}% (required: {100 * min_accuracy:.2f}%)")


if __name__ == "__main__":
    typer.run(main)
