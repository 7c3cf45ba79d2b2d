"""Reading, validating and splitting classification data (spacy_bertcat/data.py)."""

import json
from collections import Counter

import pytest
import spacy

from spacy_bertcat.data.records import META_KEY, Record, read_docbin, read_records, records_to_docs, write_docbin
from spacy_bertcat.data.splits import parse_fractions, split_records


def write_lines(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def jsonl(path, rows):
    return write_lines(path, [json.dumps(row) for row in rows])


def balanced_records(n_per_label=(40, 30, 20), seed_text="doc"):
    records = []
    for label, n in zip("abc", n_per_label):
        records += [Record(f"{seed_text} {label} {i}", {label: 1.0}, line=len(records) + 1) for i in range(n)]
    return records


@pytest.mark.parametrize(
    "row,expected",
    [
        ({"text": "t", "label": "sport"}, {"sport": 1.0}),
        ({"text": "t", "label": 3}, {"3": 1.0}),
        ({"text": "t", "labels": ["a", "b"]}, {"a": 1.0, "b": 1.0}),
        ({"text": "t", "labels": []}, {}),
        ({"text": "t", "cats": {"a": 1, "b": 0.0, "c": True}}, {"a": 1.0, "b": 0.0, "c": 1.0}),
    ],
)
def test_jsonl_label_fields(tmp_path, row, expected):
    (record,) = read_records(jsonl(tmp_path / "d.jsonl", [row]))
    assert record.cats == expected
    assert record.text == "t" and record.line == 1
    assert record.complete == ("cats" not in row)


def test_csv_label_columns(tmp_path):
    path = write_lines(
        tmp_path / "d.csv",
        ["id,body,tags", '1,"first, with a comma",a|b', '2,"second\nspans two lines","[""c""]"', "3,third,a"],
    )
    records = list(read_records(path, text_field="body", label_field="tags"))
    assert [r.cats for r in records] == [{"a": 1.0, "b": 1.0}, {"c": 1.0}, {"a": 1.0}]
    assert [r.line for r in records] == [2, 3, 5]
    assert records[1].text == "second\nspans two lines"
    assert records[0].meta == {"id": "1"}


def test_tsv_and_separator(tmp_path):
    path = write_lines(tmp_path / "d.tsv", ["text\tlabels", "one\tx;y", "two\tz"])
    records = list(read_records(path, labels_sep=";"))
    assert [r.positives for r in records] == [["x", "y"], ["z"]]


def test_text_lines_and_folders(tmp_path):
    path = write_lines(tmp_path / "d.txt", ["first", "", "second"])
    records = list(read_records(path, require_labels=False))
    assert [(r.text, r.line) for r in records] == [("first", 1), ("second", 3)]
    for label in ("neg", "pos"):
        (tmp_path / "folders" / label).mkdir(parents=True)
        (tmp_path / "folders" / label / "001.txt").write_bytes(f"a {label} text\r\n".encode())
    (tmp_path / "folders" / "pos" / "2019").mkdir()
    (tmp_path / "folders" / "pos" / "2019" / "002.txt").write_bytes("café".encode("utf-16"))
    records = list(read_records(tmp_path / "folders"))
    assert [(r.text, r.positives, r.meta["id"]) for r in records] == [
        ("a neg text", ["neg"], "neg/001"),
        ("a pos text", ["pos"], "pos/001"),
        ("café", ["pos"], "pos/2019/002"),  # a subfolder counts for its top folder; UTF-16 with its BOM
    ]


def test_folder_files_that_are_not_utf8_are_named(tmp_path):
    """A file in another encoding is an error that names it (not a silent guess);
    --fallback-encoding reads it, with a warning that names it."""
    for label in ("neg", "pos"):
        (tmp_path / label).mkdir()
        (tmp_path / label / "001.txt").write_text(f"a {label} text", encoding="utf-8")
    (tmp_path / "pos" / "002.txt").write_bytes("a fee of \xa315m".encode("latin-1"))
    with pytest.raises(ValueError, match=r"BC047.*pos/002.txt.*--encoding"):
        list(read_records(tmp_path))
    with pytest.warns(UserWarning, match=r"BCW010.*pos/002.txt.*cp1252"):
        records = list(read_records(tmp_path, fallback_encoding="cp1252"))
    assert records[-1].text == "a fee of £15m"
    (tmp_path / "pos" / "002.txt").write_bytes("utf-16 without a mark".encode("utf-16-le"))
    with pytest.raises(ValueError, match=r"BC047.*pos/002.txt.*NUL bytes"):
        list(read_records(tmp_path))
    (tmp_path / "pos" / "002.txt").write_text("  \n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"BC043.*pos/002.txt: the file is empty"):
        list(read_records(tmp_path))


@pytest.mark.parametrize(
    "lines,kwargs,message",
    [
        (['{"text": "a", "label": "x"}', '{"text": "b", "label": "y"', '{"text": "c", "label": "x"}'], {}, "line 2"),
        (
            ['{"text": "a", "label": "x"}', '{"text": "", "label": "y"}'],
            {},
            "line 2: the text field 'text' must be a non-empty",
        ),
        (['{"label": "x"}'], {}, "line 1: the text field 'text' is missing"),
        (['{"text": "a", "label": "x"}', "[1, 2]"], {}, "line 2: expected a JSON object"),
        (['{"text": "a", "labels": ["x", "y"]}'], {"exclusive": True}, "line 1: it has 2 positive labels"),
        (
            ['{"text": "a", "label": "x"}', '{"text": "b", "label": "z"}'],
            {"allowed_labels": ["x", "y"]},
            "line 2: unknown label(s) ['z']",
        ),
        (['{"text": "a", "label": null}'], {}, "line 1: 'label' must be a label"),
        (['{"text": "a", "cats": {"x": 0.7}}'], {}, "use 0 or 1"),
        (['{"text": "a", "tag": "x"}'], {}, "line 1: it has no label field"),
    ],
)
def test_bad_records_name_the_line(tmp_path, lines, kwargs, message):
    path = write_lines(tmp_path / "bad.jsonl", lines)
    with pytest.raises(ValueError) as e:
        list(read_records(path, **kwargs))
    assert message in str(e.value)
    assert str(path) in str(e.value)


def test_bad_csv_row(tmp_path):
    path = write_lines(tmp_path / "bad.csv", ["text,label", "fine,a", "too,many,columns"])
    with pytest.raises(ValueError, match="line 3"):
        list(read_records(path))


def test_split_sizes_and_stratification():
    records = balanced_records((40, 30, 20))
    train, dev, test = split_records(records, (0.8, 0.1, 0.1), seed=0)
    assert (len(train), len(dev), len(test)) == (72, 9, 9)
    for part, share in ((train, 0.8), (dev, 0.1), (test, 0.1)):
        counts = Counter(r.positives[0] for r in part)
        for label, n in zip("abc", (40, 30, 20)):
            assert abs(counts[label] - share * n) < 1, (label, counts)
    assert sorted(id(r) for r in train + dev + test) == sorted(id(r) for r in records)


def test_split_is_seeded():
    records = balanced_records()

    def texts(parts):
        return [[r.text for r in part] for part in parts]

    first = texts(split_records(records, (0.7, 0.3), seed=1))
    assert texts(split_records(records, (0.7, 0.3), seed=1)) == first
    assert texts(split_records(records, (0.7, 0.3), seed=2)) != first
    # Input order is kept inside each part.
    order = {r.text: i for i, r in enumerate(records)}
    assert all([order[t] for t in part] == sorted(order[t] for t in part) for part in first)


def test_split_keeps_duplicates_together():
    records = balanced_records((30, 30))
    records += [Record("Same  TEXT", {"a": 1.0}), Record("same text", {"a": 1.0}), Record("same text ", {"a": 1.0})]
    for seed in range(5):
        parts = split_records(records, (0.5, 0.5), seed=seed)
        holding = [i for i, part in enumerate(parts) if any(r.text.lower().split() == ["same", "text"] for r in part)]
        assert len(holding) == 1


def test_split_multilabel_combinations():
    records = [Record(f"t{i}", {"a": 1.0, "b": 1.0} if i % 2 else {"a": 1.0}) for i in range(40)]
    records.append(Record("rare", {"b": 1.0, "c": 1.0}))
    train, dev = split_records(records, (0.5, 0.5), seed=0)
    assert Counter(tuple(r.positives) for r in train)[("a", "b")] == 10
    assert len(train) + len(dev) == 41


@pytest.mark.parametrize("value", ["0.8,0.3", "1.0", "a,b", "0.5,0.5,0,0", "0.6,0.5,-0.1"])
def test_bad_fractions(value):
    with pytest.raises(ValueError, match="BC036"):
        parse_fractions(value)


def test_docbin_roundtrip(tmp_path):
    nlp = spacy.blank("en")
    records = [
        Record("a text", {"x": 1.0}, meta={"id": 7}),
        Record("multi", {"x": 1.0, "y": 0.0}, complete=False),
    ]
    n = write_docbin(records_to_docs(nlp, records, ["x", "y", "z"]), tmp_path / "d.spacy")
    docs = read_docbin(tmp_path / "d.spacy", nlp)
    assert n == 2
    assert [doc.text for doc in docs] == ["a text", "multi"]
    assert docs[0].cats == {"x": 1.0, "y": 0.0, "z": 0.0}
    assert docs[1].cats == {"x": 1.0, "y": 0.0}  # z is missing, not negative
    assert docs[0].user_data[META_KEY] == {"id": 7}


def test_csv_line_numbers_skip_blank_lines(tmp_path):
    path = write_lines(tmp_path / "d.csv", ["text,label", "", "a,x", "", "", '"multi', 'line",y', "bad,row,here"])
    with pytest.raises(ValueError, match="line 8"):
        list(read_records(path))
    records = list(read_records(write_lines(tmp_path / "ok.csv", ["text,label", "", "a,x", "", '"b', 'c",y'])))
    assert [r.line for r in records] == [3, 5]
