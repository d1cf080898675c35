"""SIB-200 and BRIGHTER loaders, on fixture trees and on the real demo data."""
from __future__ import annotations

import csv
from pathlib import Path

import pytest

from fixtures_data import make_brighter_tree, make_sib200_tree
from peft_utils.data import (EMOTIONS, SIB200_LABELS, DataError, load_brighter, load_sib200,
                             load_split)

SHARED = Path(__file__).parents[1].parent / "shared" / "data"


def raises_at(path: Path, line: int | None, call, match: str = "") -> DataError:
    with pytest.raises(DataError, match=match) as info:
        call()
    if line is not None:
        assert f"{path.name}:{line}:" in str(info.value), str(info.value)
    else:
        assert path.name in str(info.value)
    return info.value


# ------------------------------------------------------------------ SIB-200
def test_sib200_loads_parallel_rows_with_iso_codes(tmp_path):
    root = make_sib200_tree(tmp_path)
    df = load_sib200(root, ["eng_Latn", "fr", "deu_Latn"], "train")
    assert list(df.columns) == ["id", "lang", "text", "labels"]
    assert list(df["lang"].unique()) == ["en", "fr", "de"]
    assert df["id"].map(type).eq(str).all()
    en, fr = df[df["lang"] == "en"], df[df["lang"] == "fr"]
    assert list(en["id"]) == list(fr["id"]) and list(en["labels"]) == list(fr["labels"])
    assert {labels[0] for labels in df["labels"]} == set(SIB200_LABELS)
    assert df.attrs["summary"]["by_lang"]["fr"] == {"rows": 28, "labelled": 28, "unlabelled": 0}
    assert load_sib200(root, ["fr"], "dev").equals(load_sib200(root, ["fra_Latn"], "dev"))
    assert load_split("sib200", root, "test").attrs["summary"]["rows"] == 3 * 14


def test_sib200_quotes_in_text_are_kept(tmp_path):
    root = make_sib200_tree(tmp_path, langs=("eng_Latn",))
    df = load_sib200(root, ["en"], "train")
    assert df["text"].str.contains('"').all()


@pytest.mark.parametrize("line, new, match", [
    (3, "17\tsports", "expected 3 tab-separated fields, found 2"),
    (3, "17,sports,A sentence", "commas"),
    (4, "18\tcooking\tA sentence about food.", "unknown label 'cooking'"),
])
def test_sib200_bad_rows(tmp_path, line, new, match):
    root = make_sib200_tree(tmp_path, langs=("eng_Latn",))
    path = root / "eng_Latn" / "train.tsv"
    lines = path.read_text(encoding="utf-8").split("\n")
    lines[line - 1] = new
    path.write_text("\n".join(lines), encoding="utf-8")
    raises_at(path, line, lambda: load_sib200(root, ["en"], "train"), match=match)


def test_sib200_duplicate_ids_header_and_labels_file(tmp_path):
    root = make_sib200_tree(tmp_path, langs=("eng_Latn",))
    path = root / "eng_Latn" / "dev.tsv"
    lines = path.read_text(encoding="utf-8").rstrip("\n").split("\n")
    path.write_text("\n".join(lines + [lines[1]]) + "\n", encoding="utf-8")
    raises_at(path, len(lines) + 1, lambda: load_sib200(root, ["en"], "dev"),
              match="duplicate index_id")
    path.write_text("id\tlabel\ttext\n1\tsports\tx\n", encoding="utf-8")
    raises_at(path, 1, lambda: load_sib200(root, ["en"], "dev"), match="header")
    # labels.txt narrows the label set: a label outside it is unknown.
    (root / "labels.txt").write_text("travel\nsports\n", encoding="utf-8")
    path.write_text("index_id\tcategory\ttext\n1\tsports\tx\n2\thealth\ty\n", encoding="utf-8")
    raises_at(path, 3, lambda: load_sib200(root, ["en"], "dev"), match="unknown label 'health'")


def test_sib200_bom_crlf_and_bad_utf8(tmp_path):
    root = make_sib200_tree(tmp_path, langs=("eng_Latn",))
    path = root / "eng_Latn" / "test.tsv"
    before = load_sib200(root, ["en"], "test")
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes().replace(b"\n", b"\r\n"))
    assert load_sib200(root, ["en"], "test").equals(before)
    path.write_bytes(b"index_id\tcategory\ttext\n1\tsports\tok\n2\tsports\tbad \x80 byte\n")
    raises_at(path, 3, lambda: load_sib200(root, ["en"], "test"), match="invalid UTF-8")
    path.write_bytes(b"")
    raises_at(path, 1, lambda: load_sib200(root, ["en"], "test"), match="empty")


# ------------------------------------------------------------------ BRIGHTER
def test_brighter_labels_are_the_columns_set_to_one(tmp_path):
    root = make_brighter_tree(tmp_path)
    df = load_brighter(root, ["eng", "de", "rus"], "train")
    assert list(df["lang"].unique()) == ["en", "de", "ru"]
    assert all(set(labels) <= set(EMOTIONS) for labels in df["labels"])
    assert "disgust" not in {e for labels in df[df["lang"] == "en"]["labels"] for e in labels}
    assert "disgust" in {e for labels in df[df["lang"] == "de"]["labels"] for e in labels}
    # Quoted commas, quotes and newlines survive inside one field.
    assert df["text"].str.contains('"no way"').any()
    assert df["text"].str.contains("\nsecond line, after a newline").any()
    with open(root / "train" / "deu.csv", encoding="utf-8", newline="") as fh:
        expected = [[e for e in EMOTIONS if r[e] == "1"] for r in csv.DictReader(fh)]
    assert list(df[df["lang"] == "de"]["labels"]) == expected
    s = df.attrs["summary"]
    assert s["rows"] == 90 and s["unlabelled"] == 0 and 0 < s["labelled"] < 90


def test_brighter_english_test_file_is_unlabelled(tmp_path):
    root = make_brighter_tree(tmp_path, langs=("eng", "deu"))
    df = load_brighter(root, ["en", "de"], "test")
    s = df.attrs["summary"]
    assert s["by_lang"]["en"] == {"rows": 10, "labelled": 0, "unlabelled": 10}
    assert s["by_lang"]["de"]["unlabelled"] == 0
    assert all(labels == [] for labels in df[df["lang"] == "en"]["labels"])


@pytest.mark.parametrize("value, match", [("2", "expected 0 or 1"), ("yes", "expected 0 or 1"),
                                          ("", "expected 0 or 1")])
def test_brighter_bad_label_cell(tmp_path, value, match):
    root = make_brighter_tree(tmp_path, langs=("deu",))
    path = root / "dev" / "deu.csv"
    lines = path.read_text(encoding="utf-8").split("\n")
    ln = next(i for i, line in enumerate(lines, 1) if line.startswith("deu_dev_track_a_00004"))
    cells = lines[ln - 1].rsplit(",", 6)
    lines[ln - 1] = ",".join(cells[:-1] + [value])
    path.write_text("\n".join(lines), encoding="utf-8")
    raises_at(path, ln, lambda: load_brighter(root, ["de"], "dev"), match=match)


def test_brighter_line_numbers_count_newlines_inside_quotes(tmp_path):
    path = tmp_path / "b" / "train" / "eng.csv"
    path.parent.mkdir(parents=True)
    path.write_text('id,text,anger,fear,joy,sadness,surprise\n'
                    'a,"two\nlines, with comma",0,1,0,0,0\n'
                    'b,plain,0,0,1,0,0\n'
                    'c,"three\nphysical\nlines",0,0,0,0,maybe\n', encoding="utf-8")
    raises_at(path, 5, lambda: load_brighter(tmp_path / "b", ["en"], "train"), match="maybe")


def test_brighter_malformed_rows_header_duplicates(tmp_path):
    root = make_brighter_tree(tmp_path, langs=("eng",), sizes={"train": 5})
    path = root / "train" / "eng.csv"
    good = path.read_text(encoding="utf-8")
    path.write_text(good + "eng_x,too few,0,1\n", encoding="utf-8")
    raises_at(path, good.count("\n") + 1, lambda: load_brighter(root, ["en"], "train"),
              match="expected 7 comma-separated fields, found 4")
    path.write_text(good.replace("surprise", "boredom", 1), encoding="utf-8")
    raises_at(path, 1, lambda: load_brighter(root, ["en"], "train"), match="header")
    first = good.split("\n")[1]
    path.write_text(good + first + "\n", encoding="utf-8")
    raises_at(path, good.count("\n") + 1, lambda: load_brighter(root, ["en"], "train"),
              match="duplicate id")
    path.write_bytes(b"\xef\xbb\xbf" + good.replace("\n", "\r\n").encode())
    assert load_brighter(root, ["en"], "train")["id"].tolist()[0] == first.split(",")[0]


# ------------------------------------------------------------------ real demo data
@pytest.mark.skipif(not (SHARED / "sib200").is_dir(), reason="../shared/data not present")
def test_real_sib200_row_counts():
    for split, n in (("train", 701), ("dev", 99), ("test", 204)):
        df = load_sib200(SHARED / "sib200", None, split)
        by_lang = df.attrs["summary"]["by_lang"]
        assert set(by_lang) == {"en", "fr", "de", "it", "pl", "ru", "es", "el", "ka"}
        assert all(c == {"rows": n, "labelled": n, "unlabelled": 0} for c in by_lang.values())
        # Parallel: the same ids in every language.
        ids = df.groupby("lang")["id"].apply(frozenset)
        assert ids.nunique() == 1


@pytest.mark.skipif(not (SHARED / "brighter").is_dir(), reason="../shared/data not present")
def test_real_brighter_loads_every_split():
    train = load_brighter(SHARED / "brighter", None, "train")
    assert train.attrs["summary"]["by_lang"]["en"]["rows"] == 2764
    assert len(train.attrs["summary"]["by_lang"]) == 10
    test = load_brighter(SHARED / "brighter", ["eng"], "test")
    assert test.attrs["summary"]["labelled"] == 0
    assert test.attrs["summary"]["unlabelled"] == test.attrs["summary"]["rows"] > 0
    dev = load_brighter(SHARED / "brighter", ["deu"], "dev")
    assert dev.attrs["summary"]["labelled"] > 0
