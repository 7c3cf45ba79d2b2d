"""TF-IDF + logistic regression baseline on the project's .spacy splits.

Trains on the train split and scores the test split with the same report code as
`python -m spacy_bertcat evaluate`, so the numbers are directly comparable; the JSON it
writes is what `evaluate --baseline` shows beside the transformer's.
"""

from pathlib import Path

import numpy
import spacy
import typer
from wasabi import msg

from spacy_bertcat.data.records import META_KEY, read_docbin
from spacy_bertcat.evaluation.evaluate import write_report
from spacy_bertcat.evaluation.report import compute_report, gold_matrix

NAME = "TF-IDF + logistic regression"


def main(
    train_path: Path = typer.Argument(..., help="Training data (.spacy)", exists=True),
    test_path: Path = typer.Argument(..., help="Test data (.spacy)", exists=True),
    output_dir: Path = typer.Argument(..., help="Directory for report.json and report.md", file_okay=False),
    c: float = typer.Option(10.0, "--c", help="Inverse regularization strength of the logistic regression"),
) -> None:
    """Train and evaluate the baseline (exclusive classes)."""
    try:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
    except ImportError:
        msg.fail("The baseline needs scikit-learn: pip install scikit-learn", exits=1)
    nlp = spacy.blank("en")
    train, test = read_docbin(train_path, nlp), read_docbin(test_path, nlp)
    labels = sorted({label for doc in train for label in doc.cats})
    gold_train, _ = gold_matrix(train, labels)
    gold_test, mask = gold_matrix(test, labels)
    model = make_pipeline(
        TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), min_df=2),
        LogisticRegression(C=c, max_iter=2000),
    )
    model.fit([doc.text for doc in train], numpy.asarray(labels)[gold_train.argmax(axis=1)])
    proba = model.predict_proba([doc.text for doc in test])
    scores = proba[:, [list(model.classes_).index(label) for label in labels]]
    ids = [doc.user_data.get(META_KEY, {}).get("id", i) for i, doc in enumerate(test)]
    report = compute_report(
        labels, gold_test, scores, exclusive=True, mask=mask, texts=[doc.text for doc in test], ids=ids
    )
    report["name"] = NAME
    write_report(
        report,
        output_dir,
        title=f"Baseline: {NAME}",
        plots=False,
        context={"model": f"{NAME} (word 1-2 grams, sublinear tf, C={c})", "train": train_path, "data": test_path},
    )
    msg.good(
        f"{NAME}: test accuracy {100 * report['summary']['accuracy']:.2f}, "
        f"macro F1 {100 * report['summary']['macro_f']:.2f} ({len(test)} docs); saved to {output_dir}"
    )


if __name__ == "__main__":
    typer.run(main)
