"""The output guards every command runs before it writes (data/atomic.py), the
atomic save that re-checks before its swap, and the readers' coded errors for
encodings and files that are no DocBin (issue 24)."""

import pytest
import spacy

from spacy_bertcat.data.atomic import (
    check_not_an_input,
    check_output_file,
    check_output_folder,
    save_directory_atomically,
)
from spacy_bertcat.data.records import file_encoding, read_docbin, read_rows


def test_a_new_or_empty_folder_is_an_output(tmp_path):
    assert check_output_folder(tmp_path / "new") is False
    (tmp_path / "empty").mkdir()
    assert check_output_folder(tmp_path / "empty") is False


def test_a_used_folder_or_a_file_is_not(tmp_path):
    used = tmp_path / "used"
    used.mkdir()
    for i in range(7):
        (used / f"f{i}.txt").write_text("x")
    with pytest.raises(ValueError, match=r"BC081.*f0.txt, f1.txt, f2.txt, f3.txt, f4.txt and 2 more.*optimize"):
        check_output_folder(used, command="optimize")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="BC081.*it is a file"):
        check_output_folder(tmp_path / "file")
    (tmp_path / "link").symlink_to(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="BC081.*broken link"):
        check_output_folder(tmp_path / "link")


def test_an_earlier_output_of_the_same_kind_may_be_written_again(tmp_path):
    report = tmp_path / "report"
    report.mkdir()
    (report / "report.md").write_text("old")
    (report / ".report.json.1a2b3c4d.tmp").write_text("debris of a killed atomic_write")
    assert check_output_folder(report, may_hold=("report.md", "report.json")) is False
    (report / "mine.csv").write_text("x")
    with pytest.raises(ValueError, match="BC081.*mine.csv.*an earlier output holds only report.json, report.md"):
        check_output_folder(report, may_hold=("report.md", "report.json"))


def test_inputs_are_never_an_output_nor_inside_or_around_one(tmp_path):
    model, data = tmp_path / "model", tmp_path / "data" / "dev.jsonl"
    model.mkdir()
    data.parent.mkdir()
    data.write_text("{}\n")
    for output, relation in ((model, "is"), (model / "sub", "is inside"), (data.parent, "contains")):
        with pytest.raises(ValueError, match=f"BC080.*it {relation} "):
            check_output_folder(output, inputs=[model, data, None, "an_installed_package"])
    (tmp_path / "alias").symlink_to(model)
    with pytest.raises(ValueError, match="BC080.*it is "):
        check_not_an_input(tmp_path / "alias", [model])
    check_not_an_input(tmp_path / "elsewhere", [model, data])


def test_a_pipeline_may_be_replaced_by_its_updated_copy_only(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    for name in ("config.cfg", "meta.json"):
        (model / name).write_text("x")
    entries = ["config.cfg", "meta.json", "vocab", "tokenizer", "bertcat"]
    assert check_output_folder(model, inputs=[model], replace_pipeline=model, pipeline_entries=entries) is True
    (model / "README.md").write_text("model card")
    with pytest.raises(ValueError, match="BC082.*README.md.*--output"):
        check_output_folder(model, inputs=[model], replace_pipeline=model, pipeline_entries=entries)
    data = model / "dev.jsonl"
    data.write_text("{}\n")
    with pytest.raises(ValueError, match="BC080.*contains"):
        check_output_folder(model, inputs=[model, data], replace_pipeline=model)


def test_an_output_file(tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text("{}\n")
    check_output_file(tmp_path / "out.jsonl", inputs=[source])
    with pytest.raises(ValueError, match="BC080.*it is "):
        check_output_file(source, inputs=[source], overwrite=True)
    with pytest.raises(ValueError, match="BC091.*predictions.jsonl"):
        check_output_file(tmp_path, example="predictions.jsonl")
    (tmp_path / "out.jsonl").write_text("earlier")
    with pytest.raises(ValueError, match="BC085.*--overwrite"):
        check_output_file(tmp_path / "out.jsonl", command="predict")
    check_output_file(tmp_path / "out.jsonl", overwrite=True)


def test_the_atomic_save_checks_again_before_its_swap(tmp_path):
    target = tmp_path / "pipeline"

    def appeared():
        raise ValueError("something appeared")

    with pytest.raises(ValueError, match="appeared"):
        save_directory_atomically(target, lambda tmp: (tmp / "config.cfg").write_text("new"), check=appeared)
    assert not target.exists() and not list(tmp_path.glob(".*.tmp"))


def test_encodings(tmp_path):
    path = tmp_path / "latin.jsonl"
    path.write_bytes('{"text": "caf\xe9"}\n'.encode("cp1252"))
    with pytest.raises(ValueError, match="BC047.*--encoding"):
        file_encoding(path, None, None)
    with pytest.warns(UserWarning, match="BCW023.*cp1252"):
        assert file_encoding(path, None, "cp1252") == "cp1252"
    assert [row for _, row in read_rows(path, encoding="cp1252")] == [{"text": "caf\xe9"}]
    with pytest.warns(UserWarning, match="BCW023"):
        assert [row for _, row in read_rows(path, fallback_encoding="latin-1")] == [{"text": "caf\xe9"}]
    with pytest.raises(ValueError, match="BC084.*'elvish' \\(--encoding\\)"):
        list(read_rows(path, encoding="elvish"))
    with pytest.raises(ValueError, match="BC084.*--fallback-encoding"):
        list(read_rows(path, fallback_encoding="elvish"))


def test_a_file_that_is_no_docbin(tmp_path):
    nlp = spacy.blank("en")
    (tmp_path / "empty.spacy").write_bytes(b"")
    (tmp_path / "text.spacy").write_text("hello")
    for name in ("empty.spacy", "text.spacy"):
        with pytest.raises(ValueError, match="BC043.*not a .spacy file"):
            read_docbin(tmp_path / name, nlp)
