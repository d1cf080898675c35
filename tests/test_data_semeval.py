"""SemEval-2023 Task 3 loader: layout, language codes, subtask 3 paragraphs, bad input."""
from __future__ import annotations

from pathlib import Path

import pytest

from fixtures_data import make_semeval_tree
from peft_utils.data import (EMOTIONS, FRAMES, GENRES, TECHNIQUES, DataError, is_multilabel,
                             label_names, load_semeval)


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    # Read-only tree shared by the tests that do not modify files.
    return make_semeval_tree(tmp_path_factory.mktemp("semeval"), textless_rows=1)


@pytest.fixture
def fresh(tmp_path) -> Path:
    return make_semeval_tree(tmp_path, langs=("en",), splits=("train",), n_articles=4)


def replace_line(path: Path, line_no: int, new: str) -> None:
    lines = path.read_text(encoding="utf-8").split("\n")
    lines[line_no - 1] = new
    path.write_text("\n".join(lines), encoding="utf-8")


def raises_at(path: Path, line: int | None, call, match: str = "") -> DataError:
    with pytest.raises(DataError, match=match) as info:
        call()
    message = str(info.value)
    assert path.name in message
    if line is not None:
        assert f"{path.name}:{line}:" in message, message
        assert info.value.line == line
    return info.value


def test_label_sets_are_the_official_ones():
    assert GENRES == ("reporting", "opinion", "satire")
    assert len(FRAMES) == 14 and len(set(FRAMES)) == 14
    assert len(TECHNIQUES) == 23 and "Appeal_to_Fear-Prejudice" in TECHNIQUES
    assert EMOTIONS == ("anger", "disgust", "fear", "joy", "sadness", "surprise")
    assert label_names("semeval2023", 2) == list(FRAMES)
    assert label_names("sib200")[0] == "science/technology" and len(label_names("sib200")) == 7
    assert [is_multilabel("semeval2023", k) for k in (1, 2, 3)] == [False, True, True]
    assert not is_multilabel("sib200") and is_multilabel("brighter")
    with pytest.raises(ValueError, match="subtask"):
        label_names("semeval2023")


def test_subtask1_reads_whole_articles_with_iso_langs(tree):
    df = load_semeval(tree, 1, "train")
    assert list(df.columns) == ["id", "lang", "text", "labels"]
    # es has test data only, so it is not a train language of the tree.
    assert list(df["lang"].unique()) == ["en", "de"]
    assert all(len(labels) == 1 and labels[0] in GENRES for labels in df["labels"])
    first = (tree / "en" / "train-articles-subtask-1" / f"article{df['id'][0]}.txt")
    title, blank, body = first.read_text(encoding="utf-8").split("\n")[:3]
    assert df["text"][0].startswith(f"{title}\n\n{body}")
    s = df.attrs["summary"]
    assert s["rows"] == 12 and s["labelled"] == 12 and s["excluded"] == 0
    assert s["by_lang"] == {"en": {"rows": 6, "labelled": 6, "unlabelled": 0},
                            "de": {"rows": 6, "labelled": 6, "unlabelled": 0}}
    assert any(p.endswith("train-labels-subtask-1.txt") for p in s["source"])


def test_folder_and_iso_codes_give_the_same_rows(tree):
    by_folder = load_semeval(tree, 2, "dev", langs=["ge"])
    by_iso = load_semeval(tree, 2, "dev", langs=["de"])
    assert by_folder.equals(by_iso)
    assert set(by_folder["lang"]) == {"de"}
    assert all(set(labels) <= set(FRAMES) for labels in by_folder["labels"])
    assert max(map(len, by_folder["labels"])) > 1  # multilabel rows survive


def test_unknown_or_missing_language_is_reported(tree):
    with pytest.raises(DataError, match="unknown language 'xx'"):
        load_semeval(tree, 1, "train", langs=["xx"])
    raises_at(tree / "es" / "train-articles-subtask-1", None,
              lambda: load_semeval(tree, 1, "train", langs=["es"]), match="only have test")
    raises_at(tree / "po", None, lambda: load_semeval(tree, 1, "train", langs=["pl"]),
              match="language folder not found")


def test_subtask3_paragraphs_template_and_article_fallback(tree):
    df = load_semeval(tree, 3, "train", langs=["en"])
    assert list(df.columns) == ["id", "lang", "text", "labels", "line"]
    assert df["line"].dtype.kind == "i"
    template = (tree / "en" / "train-labels-subtask-3.template").read_text(encoding="utf-8")
    # Titles (line 1) are not in the template, like the real release: text from the article.
    titles = df[df["line"] == 1]
    assert len(titles) == 6
    for _, row in titles.iterrows():
        article = tree / "en" / "train-articles-subtask-3" / f"article{row['id']}.txt"
        assert row["text"] == article.read_text(encoding="utf-8").split("\n")[0]
        assert f"{row['id']}\t1\t" not in template
    # Paragraphs come from the template, and unlabelled ones are kept with labels [].
    para = df[df["line"] == 3].iloc[0]
    assert f"{para['id']}\t3\t{para['text']}" in template
    assert (df["labels"].map(len) == 0).any()
    assert all(set(labels) <= set(TECHNIQUES) for labels in df["labels"])
    s = df.attrs["summary"]
    assert s["rows"] == len(df) == 6 * 5
    assert s["labelled"] == int((df["labels"].map(len) > 0).sum()) < s["rows"]


def test_subtask3_rows_without_text_are_excluded_and_reported(tree):
    df = load_semeval(tree, 3, "train")
    s = df.attrs["summary"]
    assert s["excluded"] == 2  # one textless row per language (fixture textless_rows=1)
    reason = s["excluded_reasons"][0]
    assert set(reason) >= {"file", "line", "id", "reason"}
    assert reason["file"].endswith("en/train-labels-subtask-3.txt")
    assert reason["line"] == 6 and reason["paragraph"] == 900
    assert reason["id"] == df["id"][0] and "line 900" in reason["reason"]
    assert not ((df["id"] == reason["id"]) & (df["line"] == 900)).any()


def test_subtask3_strict_raises_on_rows_without_text(tree):
    raises_at(tree / "en" / "train-labels-subtask-3.txt", 6,
              lambda: load_semeval(tree, 3, "train", strict=True), match="no text")


@pytest.mark.parametrize("subtask", [1, 2, 3])
def test_test_split_without_labels_loads_unlabelled(tree, subtask):
    df = load_semeval(tree, subtask, "test")
    assert list(df["lang"].unique()) == ["en", "de", "es"]
    assert all(labels == [] for labels in df["labels"])
    s = df.attrs["summary"]
    assert s["labelled"] == 0 and s["unlabelled"] == s["rows"] == len(df)
    expected = 18 if subtask < 3 else 18 * 4  # ST3: every template row (4 per article)
    assert len(df) == expected


def test_bom_and_crlf_are_read_like_plain_utf8(tmp_path):
    plain = make_semeval_tree(tmp_path / "a", langs=("en",), splits=("train",), n_articles=3)
    messy = make_semeval_tree(tmp_path / "b", langs=("en",), splits=("train",), n_articles=3)
    for path in (messy / "en").rglob("*"):
        if path.is_file():
            text = path.read_text(encoding="utf-8").replace("\n", "\r\n")
            path.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    for k in (1, 2, 3):
        a, b = load_semeval(plain, k, "train"), load_semeval(messy, k, "train")
        assert a.equals(b), k
        assert not b["text"].str.contains("\r|\ufeff").any()


def test_trailing_empty_technique_field_may_be_cut(fresh):
    labels = fresh / "en" / "train-labels-subtask-3.txt"
    lines = labels.read_text(encoding="utf-8").split("\n")
    ln = next(i for i, line in enumerate(lines, 1) if line.endswith("\t"))
    replace_line(labels, ln, lines[ln - 1].rstrip("\t"))
    df = load_semeval(fresh, 3, "train")
    assert len(df) == 4 * 5


# ------------------------------------------------------------------ bad input
def _labels(root, k):
    return root / "en" / f"train-labels-subtask-{k}.txt"


def _article(root, k, n=0):
    return sorted((root / "en" / f"train-articles-subtask-{k}").glob("article*.txt"))[n]


@pytest.mark.parametrize("k, line, new, match", [
    (1, 2, "{id}\topinion\textra", "expected 2 tab-separated fields, found 3"),
    (1, 2, "{id},opinion", "commas"),
    (1, 3, "{id} satire", "spaces"),
    (1, 2, "{id}\tsarcasm", "unknown label 'sarcasm'"),
    (1, 2, "{id}\t", "exactly one genre"),
    (2, 4, "{id}\tEconomic,Sports", "unknown label 'Sports'"),
    (2, 2, "{id} Economic", "spaces"),
    (3, 2, "{id}\t3\tLoaded_Language,Propaganda", "unknown label 'Propaganda'"),
    (3, 2, "{id}\tthree\t", "not a positive integer"),
    (3, 2, "{id},3,Doubt", "commas"),
    (3, 2, "{id}\t3\tDoubt\textra", "found 4"),
])
def test_malformed_label_lines_name_file_and_line(fresh, k, line, new, match):
    path = _labels(fresh, k)
    article_id = path.read_text(encoding="utf-8").split("\n")[line - 1].split("\t")[0]
    replace_line(path, line, new.format(id=article_id))
    raises_at(path, line, lambda: load_semeval(fresh, k, "train"), match=match)


@pytest.mark.parametrize("k", [1, 3])
def test_duplicate_ids_are_rejected(fresh, k):
    path = _labels(fresh, k)
    lines = path.read_text(encoding="utf-8").rstrip("\n").split("\n")
    path.write_text("\n".join(lines + [lines[0]]) + "\n", encoding="utf-8")
    raises_at(path, len(lines) + 1, lambda: load_semeval(fresh, k, "train"),
              match=r"duplicate row .*\(first on line 1\)")


@pytest.mark.parametrize("k", [1, 2, 3])
def test_label_row_whose_article_is_missing(fresh, k):
    article = _article(fresh, k, 1)
    article.unlink()
    article_id = article.stem.removeprefix("article")
    lines = _labels(fresh, k).read_text(encoding="utf-8").split("\n")
    ln = next(i for i, line in enumerate(lines, 1) if line.startswith(article_id + "\t"))
    err = raises_at(_labels(fresh, k), ln, lambda: load_semeval(fresh, k, "train"),
                    match="not found")
    assert article.name in str(err)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_article_without_label_row(fresh, k):
    extra = _article(fresh, k).with_name("article999.txt")
    extra.write_text("A title\n\nA body.\n", encoding="utf-8")
    raises_at(extra, None, lambda: load_semeval(fresh, k, "train"), match="no label row")


def test_invalid_utf8_reports_the_line(fresh):
    path = _labels(fresh, 1)
    raw = path.read_bytes().split(b"\n")
    raw[2] = raw[2] + b"\xff\xfe"
    path.write_bytes(b"\n".join(raw))
    raises_at(path, 3, lambda: load_semeval(fresh, 1, "train"), match="invalid UTF-8")
    article = _article(fresh, 2)
    article.write_bytes(b"Title\n\nBody \xe9t\xe9 latin-1\n")
    raises_at(article, 3, lambda: load_semeval(fresh, 2, "train"), match="invalid UTF-8")


def test_empty_files_are_rejected(fresh):
    _labels(fresh, 2).write_text("\n\n", encoding="utf-8")
    raises_at(_labels(fresh, 2), 1, lambda: load_semeval(fresh, 2, "train"), match="empty")
    article = _article(fresh, 1)
    article.write_text("", encoding="utf-8")
    raises_at(article, 1, lambda: load_semeval(fresh, 1, "train"), match="empty")


def test_malformed_template_row(fresh):
    path = fresh / "en" / "train-labels-subtask-3.template"
    replace_line(path, 2, "no tabs in this template row")
    raises_at(path, 2, lambda: load_semeval(fresh, 3, "train"), match="spaces")


def test_train_split_needs_its_label_file(fresh):
    _labels(fresh, 1).unlink()
    raises_at(_labels(fresh, 1), None, lambda: load_semeval(fresh, 1, "train"),
              match="label file not found")
