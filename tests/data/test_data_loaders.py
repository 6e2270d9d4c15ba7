"""Tests for reading CSV/TSV/JSONL tables, SST-2, BBC News and validation splits."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import numpy as np
import pytest

from aslora_core.data import DataError, LabelledTexts, load_bbc_news, load_table, split_validation

SST2_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "sst2"
SST2_TRAIN_ROWS = 67_349
SST2_DEV_ROWS = 872
SST2_TRAIN_POSITIVES = 37_569
BBC_CLASS_SIZES = {"business": 510, "entertainment": 386, "politics": 417, "sports": 511, "tech": 401}
SECRET = "patient 4711 was diagnosed with a rare condition"


def _write_csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _write_jsonl(path: Path, records: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def test_csv_with_commas_and_quotes(tmp_path: Path) -> None:
    texts = ['a "quoted", comma text', "plain", "multi\nline"]
    path = _write_csv(tmp_path / "d.csv", ["sentence", "label"], [[t, i % 2] for i, t in enumerate(texts)])
    data = load_table(path)
    assert [e.text for e in data.examples] == texts
    assert data.labels.tolist() == [0, 1, 0]
    assert data.labels.dtype == np.int64
    assert data.label_names == ("0", "1")
    assert all(e.text_pair is None for e in data.examples)


def test_tsv_is_unquoted_like_glue(tmp_path: Path) -> None:
    path = tmp_path / "d.tsv"
    path.write_text(
        'label\tsentence\n1\tit \'s a "great" film\n0\t" opens but never closes\n', encoding="utf-8"
    )
    data = load_table(path)
    assert [e.text for e in data.examples] == ['it \'s a "great" film', '" opens but never closes']
    assert data.labels.tolist() == [1, 0]


def test_tsv_row_with_wrong_field_count_names_line(tmp_path: Path) -> None:
    path = tmp_path / "d.tsv"
    path.write_text(f"label\tsentence\n1\tfine\n0\t{SECRET}\textra\n", encoding="utf-8")
    with pytest.raises(DataError, match="line 3") as caught:
        load_table(path)
    assert SECRET not in str(caught.value)


def test_jsonl_pairs_and_string_labels(tmp_path: Path) -> None:
    records: list[dict[str, object]] = [
        {"premise": "p0", "hypothesis": "h0", "gold": "neutral"},
        {"premise": "p1", "hypothesis": "h1", "gold": "entailment"},
        {"premise": "p2", "hypothesis": "h2", "gold": "contradiction"},
    ]
    path = _write_jsonl(tmp_path / "d.jsonl", records)
    data = load_table(path, text_column="premise", text_pair_column="hypothesis", label_column="gold")
    assert data.label_names == ("contradiction", "entailment", "neutral")
    assert data.labels.tolist() == [2, 1, 0]
    assert [(e.text, e.text_pair) for e in data.examples] == [("p0", "h0"), ("p1", "h1"), ("p2", "h2")]
    assert data.has_pairs


def test_csv_pair_columns(tmp_path: Path) -> None:
    path = _write_csv(tmp_path / "d.csv", ["q1", "q2", "label"], [["a?", "b?", 1], ["c?", "d?", 0]])
    data = load_table(path, text_column="q1", text_pair_column="q2")
    assert [(e.text, e.text_pair, e.label) for e in data.examples] == [("a?", "b?", 1), ("c?", "d?", 0)]


def test_given_label_names_fix_the_order(tmp_path: Path) -> None:
    path = _write_jsonl(
        tmp_path / "d.jsonl", [{"sentence": "x", "label": "pos"}, {"sentence": "y", "label": "neg"}]
    )
    data = load_table(path, label_names=["pos", "neg"])
    assert data.label_names == ("pos", "neg")
    assert data.labels.tolist() == [0, 1]


def test_integer_labels_keep_their_value_and_take_given_names(tmp_path: Path) -> None:
    path = _write_jsonl(
        tmp_path / "d.jsonl", [{"sentence": "x", "label": 2}, {"sentence": "y", "label": "0"}]
    )
    assert load_table(path).label_names == ("0", "1", "2")
    named = load_table(path, label_names=("a", "b", "c"))
    assert named.labels.tolist() == [2, 0]
    assert named.label_names == ("a", "b", "c")


def test_jsonl_lines_extension(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "d.json-lines", [{"sentence": "x", "label": 0}])
    assert len(load_table(path)) == 1


def test_missing_column_lists_available_columns(tmp_path: Path) -> None:
    path = _write_csv(tmp_path / "d.csv", ["text", "label"], [["x", 0]])
    with pytest.raises(DataError, match="sentence") as caught:
        load_table(path)
    assert "'text'" in str(caught.value)
    assert "'label'" in str(caught.value)


def test_headerless_file_does_not_echo_first_record(tmp_path: Path) -> None:
    path = tmp_path / "d.tsv"
    path.write_text(f"0\t{SECRET}\n1\tanother one\n", encoding="utf-8")
    with pytest.raises(DataError, match="available columns") as caught:
        load_table(path)
    assert SECRET not in str(caught.value)


def test_unknown_label_names_line_not_text(tmp_path: Path) -> None:
    path = _write_csv(tmp_path / "d.csv", ["sentence", "label"], [["fine", "pos"], [SECRET, "maybe"]])
    with pytest.raises(DataError, match="line 3") as caught:
        load_table(path, label_names=("neg", "pos"))
    assert SECRET not in str(caught.value)
    assert "maybe" not in str(caught.value)


def test_integer_label_outside_given_names(tmp_path: Path) -> None:
    path = _write_csv(tmp_path / "d.csv", ["sentence", "label"], [["a", 0], [SECRET, 5]])
    with pytest.raises(DataError, match="line 3") as caught:
        load_table(path, label_names=("neg", "pos"))
    assert SECRET not in str(caught.value)


def test_negative_integer_label_is_rejected(tmp_path: Path) -> None:
    path = _write_csv(tmp_path / "d.csv", ["sentence", "label"], [["a", 0], ["b", -1]])
    with pytest.raises(DataError, match="line 3"):
        load_table(path)


def test_text_column_used_as_label_is_caught(tmp_path: Path) -> None:
    rows: list[list[object]] = [[f"{SECRET} {i}", i % 2] for i in range(5)]
    path = _write_csv(tmp_path / "d.csv", ["sentence", "label"], rows)
    with pytest.raises(DataError, match="distinct values") as caught:
        load_table(path, text_column="label", label_column="sentence", max_labels=3)
    assert SECRET not in str(caught.value)


def test_empty_and_header_only_files(tmp_path: Path) -> None:
    for name, content in [("a.csv", ""), ("b.tsv", "label\tsentence\n"), ("c.jsonl", "\n\n")]:
        path = tmp_path / name
        path.write_text(content, encoding="utf-8")
        with pytest.raises(DataError):
            load_table(path)


def test_bad_json_and_extension(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text('{"sentence": "x", "label": 0}\n{"sentence": \n', encoding="utf-8")
    with pytest.raises(DataError, match="line 2"):
        load_table(path)
    other = tmp_path / "d.parquet"
    other.write_text("x", encoding="utf-8")
    with pytest.raises(DataError, match="unsupported"):
        load_table(other)


def test_jsonl_record_missing_a_column(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "d.jsonl", [{"sentence": "x", "label": 0}, {"sentence": SECRET}])
    with pytest.raises(DataError, match="line 2") as caught:
        load_table(path)
    assert SECRET not in str(caught.value)


def test_loading_logs_no_text(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = _write_csv(tmp_path / "d.csv", ["sentence", "label"], [[SECRET, 0], ["other", 1]])
    with caplog.at_level(logging.DEBUG):
        load_table(path)
    assert caplog.records
    assert SECRET not in caplog.text


def _require_sst2() -> None:
    if not (SST2_DIR / "train.tsv").is_file():
        pytest.skip(f"GLUE SST-2 not found at {SST2_DIR} (the shared data folder is absent)")


def test_sst2_row_counts() -> None:
    _require_sst2()
    train = load_table(SST2_DIR / "train.tsv")
    dev = load_table(SST2_DIR / "dev.tsv")
    assert len(train) == SST2_TRAIN_ROWS
    assert len(dev) == SST2_DEV_ROWS
    assert train.label_names == dev.label_names == ("0", "1")
    assert int(train.labels.sum()) == SST2_TRAIN_POSITIVES


def test_bbc_news() -> None:
    data = load_bbc_news()
    assert len(data) == sum(BBC_CLASS_SIZES.values()) == 2225
    assert data.label_names == tuple(sorted(BBC_CLASS_SIZES))
    counts = np.bincount(data.labels, minlength=data.num_labels)
    assert dict(zip(data.label_names, counts.tolist(), strict=True)) == BBC_CLASS_SIZES
    assert all(e.text and e.text == e.text.strip() for e in data.examples)


def _toy(size: int, num_labels: int) -> LabelledTexts:
    from aslora_core.data import TextExample

    examples = tuple(TextExample(f"t{i}", None, i % num_labels) for i in range(size))
    return LabelledTexts(examples, tuple(str(i) for i in range(num_labels)))


def test_split_validation_is_stratified_disjoint_and_seeded() -> None:
    data = _toy(1000, 4)
    train, validation = split_validation(data, 0.2, seed=7)
    assert (len(train), len(validation)) == (800, 200)
    assert np.bincount(validation.labels).tolist() == [50, 50, 50, 50]
    train_texts = {e.text for e in train.examples}
    validation_texts = {e.text for e in validation.examples}
    assert not train_texts & validation_texts
    assert train_texts | validation_texts == {e.text for e in data.examples}
    again = split_validation(data, 0.2, seed=7)[1]
    other = split_validation(data, 0.2, seed=8)[1]
    assert again.examples == validation.examples
    assert other.examples != validation.examples


def test_split_validation_rejects_bad_fraction() -> None:
    with pytest.raises(ValueError):
        split_validation(_toy(10, 2), 1.0, seed=0)
    with pytest.raises(DataError):
        split_validation(_toy(1, 1), 0.5, seed=0)
