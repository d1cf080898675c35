"""Parallel (MT) data sets in the data set registry: NTREX as a built-in entry, a user's parallel
table with a data card (`dataset: parallel-table`), and a parallel data set another package
registers through the `peft_utils.datasets` entry point group, each trained by the MT study
end to end on the tiny offline mBART."""
from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pandas as pd
import pytest
import yaml

from fake_packages import install_fake_package
from test_tuning import cli, write_yaml
from peft_utils.core.config import ConfigError
from peft_utils.data import registry
from peft_utils.data.errors import DataError
from peft_utils.mt.config import MTConfig
from peft_utils.mt.data import load_splits
from peft_utils.mt.testing import WORDS, make_tiny_mt_model

pytestmark = pytest.mark.usefixtures("one_thread")   # see conftest.one_thread

SETTINGS = dict(max_steps=4, eval_steps=2, max_eval_samples=6, max_source_length=24,
                max_target_length=16, batch_size=8, eval_batch_size=16, warmup_steps=0,
                select_on="chrf", learning_rate=3e-3, seed=1, device="cpu", method="lora",
                budget=0.1)


def sentences(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 9))) + " ." for _ in range(n)]


def translate(text: str, iso: str) -> str:
    """A learnable stand-in for a translation: every word reversed, and a language mark."""
    return " ".join(w[::-1] for w in text.split()) + f" {iso}"


@pytest.fixture(scope="module")
def tiny_mt(tmp_path_factory) -> Path:
    texts = sentences(60) + [translate(s, iso) for s in sentences(60) for iso in ("de", "fr")]
    return make_tiny_mt_model(tmp_path_factory.mktemp("models") / "tiny-mt", texts)


def write_table(folder: Path, card: dict, n_docs: int = 10, name: str = "pairs.tsv",
                pairs=(("en", "de"), ("en", "fr"))) -> Path:
    """A parallel table (doc, source, target, src_lang, tgt_lang) and its data card."""
    folder.mkdir(parents=True, exist_ok=True)
    rows, rng = [], random.Random(1)
    for d in range(n_docs):
        for text in sentences(rng.randint(3, 6), seed=d):
            rows += [{"doc": f"story{d}", "source": text, "target": translate(text, tgt),
                      "src_lang": src, "tgt_lang": tgt} for src, tgt in pairs]
    pd.DataFrame(rows).to_csv(folder / name, sep="\t" if name.endswith(".tsv") else ",",
                              index=False)
    (folder / "dataset.yaml").write_text(yaml.safe_dump(card, sort_keys=False))
    return folder


# ---- the registry -----------------------------------------------------------------------
def test_ntrex_is_a_builtin_parallel_entry_and_mt_configs_refuse_unknown_sets():
    entry = registry.get_parallel(MTConfig.dataset)
    assert entry.source_langs == ("en",) and entry.split == "document"
    assert entry.to_folder("zh") == "zho-CN" and entry.prepare == MTConfig.dataset
    assert set(registry.parallel_names()) >= {MTConfig.dataset, registry.PARALLEL_TABLE}
    assert MTConfig.dataset not in registry.names()   # not a classification data set
    with pytest.raises(ConfigError, match=r"unknown MT dataset 'sib200'; use one of ntrex, "
                                          r"parallel-table"):
        MTConfig.from_dict({"dataset": "sib200"})
    with pytest.raises(ConfigError, match="parallel table folder not found"):
        MTConfig.from_dict({"dataset": "parallel-table", "data_root": "/nowhere/at/all"})
    # The default data set keeps the run ids of before.
    assert MTConfig.from_dict({"method": "lora", "budget": 0.01}).run_id.startswith(
        "ntrex-en-de-lora-b0.01-nall-s42-")


# ---- a user's parallel table --------------------------------------------------------------
def test_a_parallel_table_splits_by_document_and_trains(tmp_path, tiny_mt):
    from peft_utils.mt.training import train_and_evaluate

    root = write_table(tmp_path / "legal", {"name": "legal", "doc": "doc",
                                            "source": "a test table"})
    entry = registry.get_parallel("parallel-table", root)
    assert entry.pairs == (("en", "de"), ("en", "fr")) and entry.split == "document"
    splits = load_splits(root, "fr", "en", 0.1, 0.2, dataset="parallel-table")
    docs = [set(frame["doc"]) for frame in splits.values()]
    assert not docs[0] & docs[1] and not docs[0] & docs[2] and not docs[1] & docs[2]
    assert all(frame["tgt"].str.endswith(" fr").all() for frame in splits.values())

    config = MTConfig.from_dict({**SETTINGS, "dataset": "parallel-table", "data_root": str(root),
                                 "model": str(tiny_mt), "tgt_lang": "fr",
                                 "results_dir": str(tmp_path / "results")})
    run_id = config.run_id
    assert run_id.startswith("legal-en-fr-lora-")
    record = train_and_evaluate(config).record
    assert record["status"] == "complete" and record["metrics"]["test"]["overall"]["n"] > 0
    assert record["meta"]["data_source"] == [str(root / "pairs.tsv")]
    # The card enters the run id: another card is another data set, the folder is not.
    (root / "dataset.yaml").write_text(yaml.safe_dump({"name": "legal", "doc": "doc"}))
    assert config.replace().run_id != run_id
    with pytest.raises(ConfigError, match=r"has no fr-de rows; its pairs are en-de, en-fr"):
        config.replace(src_lang="fr", tgt_lang="de")
    with pytest.raises(ConfigError, match=r"unknown language 'ka' for parallel-table; use one "
                                          r"of en, de, fr$"):
        config.replace(tgt_lang="ka")


def test_a_table_without_documents_splits_by_row(tmp_path):
    root = write_table(tmp_path / "rows", {"name": "rows"}, name="pairs.csv")
    frame = pd.read_csv(root / "pairs.csv").drop(columns="doc")
    frame.to_csv(root / "pairs.csv", index=False)
    assert registry.get_parallel("parallel-table", root).split == "line"
    splits = load_splits(root, "de", "en", dataset="parallel-table")
    assert sum(len(f) for f in splits.values()) == (frame["tgt_lang"] == "de").sum()
    assert all(f["doc"].nunique() == len(f) for f in splits.values())   # a row per document


@pytest.mark.parametrize("edit, message", [
    (lambda f: f.drop(columns="target"), r"pairs.csv:1: no column 'target' \(the tgt column"),
    (lambda f: f.assign(source=[*f["source"][:3], "", *f["source"][4:]]),
     r"pairs.csv:5: empty 'source' \(fill in the cell or remove the row\)"),
    (lambda f: f.assign(tgt_lang=[*f["tgt_lang"][:2], "German", *f["tgt_lang"][3:]]),
     r"pairs.csv:4: unknown language 'German' in column 'tgt_lang' \(write ISO 639-1 codes"),
    (lambda f: f.assign(src_lang=[*f["src_lang"][:4], "de", *f["src_lang"][5:]]),
     r"pairs.csv:6: source and target language are both 'de'"),
])
def test_a_bad_table_names_the_file_the_line_and_the_fix(tmp_path, edit, message):
    root = write_table(tmp_path / "bad", {"name": "bad"}, name="pairs.csv")
    edit(pd.read_csv(root / "pairs.csv")).to_csv(root / "pairs.csv", index=False)
    with pytest.raises(DataError, match=message):
        load_splits(root, "de", "en", dataset="parallel-table")
    with pytest.raises(ConfigError, match=message):   # found when the config is read
        MTConfig.from_dict({"dataset": "parallel-table", "data_root": str(root)})


def test_a_bad_card_names_the_key(tmp_path):
    root = write_table(tmp_path / "card", {"name": "card", "text": "source"})
    with pytest.raises(DataError, match=r"dataset.yaml: unknown key\(s\) text"):
        registry.get_parallel("parallel-table", root)
    (root / "extra.csv").write_text("a\n1\n")
    (root / "dataset.yaml").write_text("name: card\n")
    with pytest.raises(DataError, match=r"2 table files \(extra.csv, pairs.tsv\).*file:"):
        registry.get_parallel("parallel-table", root)


# ---- a parallel data set from another package, through the entry point group -----------------
TOY_MODULE = '''
"""A toy parallel data set in its own layout: <root>/<src>-<tgt>.tsv, lines doc<TAB>src<TAB>tgt."""
from pathlib import Path

import pandas as pd

from peft_utils.data.errors import DataError
from peft_utils.data.parallel import ParallelDataSet

FILES = {"english": "en", "german": "de"}


def load(root, tgt_lang, src_lang):
    path = Path(root) / f"{ENTRY.to_folder(src_lang)}-{ENTRY.to_folder(tgt_lang)}.tsv"
    rows = []
    for ln, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        fields = line.split("\\t")
        if len(fields) != 3:
            raise DataError(path, "expected doc<TAB>src<TAB>tgt", line=ln, fix="use tabs")
        rows.append({"line": ln, "doc": fields[0], "src": fields[1], "tgt": fields[2]})
    frame = pd.DataFrame(rows, columns=["line", "doc", "src", "tgt"])
    frame.attrs.update(source=[str(path)], documents=str(path))
    return frame


ENTRY = ParallelDataSet(
    name="toy-mt", title="Toy parallel news", languages=FILES, source_langs=("en",),
    loader="toy_parallel:load", pairs=(("en", "de"),))
'''


def make_toy_package(folder: Path) -> Path:
    """toy_parallel.py and its distribution metadata, as `pip install` of a package whose
    pyproject.toml has `[project.entry-points."peft_utils.datasets"] toy-mt =
    "toy_parallel:ENTRY"` would leave them."""
    return install_fake_package(folder, "toy_parallel", TOY_MODULE, "peft_utils.datasets",
                                {"toy-mt": "toy_parallel:ENTRY"})

def make_toy_tree(root: Path, n_docs: int = 10) -> Path:
    root.mkdir(parents=True)
    lines = [f"doc{d}\t{text}\t{translate(text, 'de')}" for d in range(n_docs)
             for text in sentences(4, seed=d)]
    (root / "english-german.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def test_a_parallel_data_set_from_another_package_trains(tmp_path, tiny_mt, monkeypatch):
    plugins = make_toy_package(tmp_path / "plugins")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(plugins), os.environ.get("PYTHONPATH", "")]))
    root = make_toy_tree(tmp_path / "data" / "toy-mt")

    splits = cli("mt", "splits", "--dataset", "toy-mt", "--data-root", str(root), "--json",
                 cwd=tmp_path)
    assert splits.returncode == 0, splits.stderr
    assert sum(s["sentences"] for s in json.loads(splits.stdout).values()) == 40

    preset = write_yaml(tmp_path / "configs" / "toy.yaml", {
        **SETTINGS, "dataset": "toy-mt", "data_root": str(root), "model": str(tiny_mt),
        "src_lang": "english", "tgt_lang": "german"})   # the data set's own codes are read too
    out = cli("mt", "train", "--config", str(preset), "--results", str(tmp_path / "results"),
              cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    (record_file,) = (tmp_path / "results").glob("*/record.json")
    record = json.loads(record_file.read_text())
    assert record["status"] == "complete" and record["run_info"]["run_id"].startswith(
        "toy-mt-en-de-lora-")
    assert record["meta"]["data_source"] == [str(root / "english-german.tsv")]

    # A pair the data set lacks, and a data set nobody registered, are refused by name.
    bad = cli("mt", "train", "--config", str(preset), "--set", "tgt_lang=fr", cwd=tmp_path)
    assert bad.returncode != 0 and "unknown language 'fr' for toy-mt" in bad.stderr
    unknown = cli("mt", "train", "--config", str(preset), "--set", "dataset=toy-mx",
                  cwd=tmp_path)
    assert "unknown MT dataset 'toy-mx'; use one of ntrex, toy-mt, parallel-table" \
        in unknown.stderr
