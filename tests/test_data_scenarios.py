"""Training scenarios: multilingual, en, en+translations (parallel join, folder, refusal)."""
from __future__ import annotations

import pytest

from fixtures_data import (make_brighter_tree, make_semeval_translations, make_semeval_tree,
                           make_sib200_tree)
from peft_utils.data import DataError, build_scenario, load_semeval, load_sib200

SIB_LANGS = ("eng_Latn", "fra_Latn", "deu_Latn", "ita_Latn", "pol_Latn", "rus_Cyrl",
             "spa_Latn")


@pytest.fixture(scope="module")
def sib(tmp_path_factory):
    return make_sib200_tree(tmp_path_factory.mktemp("sib"), langs=SIB_LANGS)


def test_multilingual_takes_the_training_languages(sib):
    df = build_scenario("sib200", sib, "multilingual")
    # Default: TRAIN_LANGS, so the zero-shot es rows stay out.
    assert list(df["lang"].unique()) == ["en", "fr", "de", "it", "pl", "ru"]
    assert set(df["origin"]) == {"original"}
    assert df.attrs["summary"]["rows"] == 6 * 28
    two = build_scenario("sib200", sib, "multilingual", langs=["en", "spa_Latn"], split="dev")
    assert list(two["lang"].unique()) == ["en", "es"] and len(two) == 14


def test_en_scenario_is_english_only(sib):
    df = build_scenario("sib200", sib, "en")
    assert set(df["lang"]) == {"en"} and len(df) == 28
    assert df.attrs["summary"]["by_lang"] == {"en": {"rows": 28, "labelled": 28, "unlabelled": 0}}


def test_sib200_translations_join_english_labels_by_id(tmp_path):
    sib = make_sib200_tree(tmp_path, langs=("eng_Latn", "fra_Latn", "deu_Latn"))
    fr = sib / "fra_Latn" / "train.tsv"
    lines = fr.read_text(encoding="utf-8").rstrip("\n").split("\n")
    # A French row with a different label must take the English one (labels follow English),
    # and a French id absent from English is left out and reported.
    idx, _, text = lines[1].split("\t")
    lines[1] = f"{idx}\thealth\t{text}" if "health" not in lines[1] else f"{idx}\ttravel\t{text}"
    lines.append("99999\tsports\tUne phrase sans source anglaise.")
    fr.write_text("\n".join(lines) + "\n", encoding="utf-8")

    df = build_scenario("sib200", sib, "en+translations", langs=["fr", "de"])
    english = load_sib200(sib, ["en"], "train")
    assert list(df["lang"].unique()) == ["en", "fr", "de"]
    assert (df["origin"] == df["lang"].map(lambda x: "original" if x == "en" else
                                          "translation")).all()
    by_id = dict(zip(english["id"], english["labels"]))
    translated = df[df["origin"] == "translation"]
    assert len(translated) == 2 * 28
    assert all(labels == by_id[i] for i, labels in zip(translated["id"], translated["labels"]))
    assert (translated[translated["lang"] == "fr"]["id"] == idx).sum() == 1
    s = df.attrs["summary"]
    assert s["rows"] == 3 * 28 and s["excluded"] == 1
    assert s["excluded_reasons"][0]["id"] == "99999"


def test_sib200_translations_missing_ids_are_an_error(tmp_path):
    root = make_sib200_tree(tmp_path, langs=("eng_Latn", "fra_Latn"))
    fr = root / "fra_Latn" / "train.tsv"
    lines = fr.read_text(encoding="utf-8").rstrip("\n").split("\n")
    fr.write_text("\n".join(lines[:-2]) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match="2 English id.*no fr translation") as info:
        build_scenario("sib200", root, "en+translations", langs=["fr"])
    assert "fra_Latn/train.tsv" in str(info.value)


def test_semeval_translations_reuse_english_labels(tmp_path):
    root = make_semeval_tree(tmp_path, langs=("en", "fr"), splits=("train",), n_articles=4)
    tdir = make_semeval_translations(tmp_path, root, langs=("fr", "ge"))
    for k in (1, 2, 3):
        df = build_scenario("semeval2023", root, "en+translations", subtask=k,
                            translations_dir=tdir)
        english = load_semeval(root, k, "train", langs=["en"])
        assert list(df["lang"].unique()) == ["en", "fr", "de"]
        for lang in ("fr", "de"):
            part = df[df["lang"] == lang]
            assert (part["origin"] == "translation").all()
            assert list(part["id"]) == list(english["id"])
            assert list(part["labels"]) == list(english["labels"])
            assert part["text"].str.startswith(f"[{lang}] ").all()
        if k == 3:
            assert list(df[df["lang"] == "de"]["line"]) == list(english["line"])
        assert df.attrs["summary"]["rows"] == 3 * len(english)
    only_de = build_scenario("semeval2023", root, "en+translations", subtask=1,
                             translations_dir=tdir, langs=["de"])
    assert list(only_de["lang"].unique()) == ["en", "de"]


def test_semeval_translations_errors(tmp_path):
    root = make_semeval_tree(tmp_path, langs=("en",), splits=("train",), n_articles=3)
    with pytest.raises(DataError, match="needs translations_dir"):
        build_scenario("semeval2023", root, "en+translations", subtask=1)
    with pytest.raises(DataError, match="translations folder not found"):
        build_scenario("semeval2023", root, "en+translations", subtask=1,
                       translations_dir=tmp_path / "nope")
    tdir = make_semeval_translations(tmp_path, root, langs=("fr",), subtasks=(1,))
    with pytest.raises(DataError, match="no translations for it"):
        build_scenario("semeval2023", root, "en+translations", subtask=1,
                       translations_dir=tdir, langs=["it"])
    # A translated article missing for an English label row names the English label file.
    next((tdir / "fr" / "train-articles-subtask-1").glob("article*.txt")).unlink()
    with pytest.raises(DataError, match="en/train-labels-subtask-1.txt:1: article .* not found"):
        build_scenario("semeval2023", root, "en+translations", subtask=1, translations_dir=tdir)


def test_brighter_refuses_translations_but_runs_the_others(tmp_path):
    root = make_brighter_tree(tmp_path, langs=("eng", "deu"))
    with pytest.raises(DataError, match="needs parallel data"):
        build_scenario("brighter", root, "en+translations")
    df = build_scenario("brighter", root, "multilingual", langs=["en", "de"])
    assert list(df["lang"].unique()) == ["en", "de"] and len(df) == 60
    assert len(build_scenario("brighter", root, "en")) == 30


def test_unknown_scenario(sib):
    with pytest.raises(ValueError, match="unknown scenario"):
        build_scenario("sib200", sib, "zero-shot")
