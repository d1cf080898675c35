"""MT configs and NTREX data: validation, run ids, and the document-level split (no document
in two splits, deterministic, the same for every pair, nested training subsets)."""
from __future__ import annotations

from pathlib import Path

import pytest

from peft_utils.core.config import ConfigError
from peft_utils.data.errors import DataError
from peft_utils.mt.config import MTConfig, load_mt_config
from peft_utils.mt.data import load_ntrex, load_splits, split_documents, train_subset
from peft_utils.mt.langs import group_of, to_iso
from peft_utils.mt.testing import make_ntrex_tree

REPO = Path(__file__).resolve().parents[1]
SHARED_NTREX = REPO.parent / "shared" / "data" / "ntrex"


@pytest.fixture(scope="module")
def ntrex(tmp_path_factory) -> Path:
    return make_ntrex_tree(tmp_path_factory.mktemp("mt") / "ntrex", n_docs=20)


# ---- config -------------------------------------------------------------------------
def test_config_normalises_languages_and_fixed_size_budgets():
    config = MTConfig.from_dict({"tgt_lang": "deu_Latn", "method": "fft", "budget": 0.01})
    assert config.tgt_lang == "de" and config.pair == "en-de"
    assert config.budget is None   # fft has no size to set: one cell per budget axis
    assert to_iso("zho-CN") == "zh" and group_of("ka") == "distant" and group_of("it") == "close"
    lora = MTConfig.from_dict({"method": "lora", "budget": "1e-2"})
    assert lora.budget == 0.01 and "-lora-b0.01-nall-" in lora.run_id


@pytest.mark.parametrize("raw, message", [
    ({"tgt_lang": "xx"}, r"tgt_lang: unknown language 'xx'"),
    ({"method": "qlora"}, r"unknown method 'qlora'"),
    ({"method": "lora", "budget": 10}, r"budget is a fraction .* in \(0, 1\)"),
    ({"tgt_lang": "en"}, r"src_lang and tgt_lang are both 'en'"),
    ({"train_size": 0}, r"train_size must be a positive integer"),
    ({"dev_fraction": 0.5, "test_fraction": 0.45}, r"leave at least 10%"),
    ({"learning_rat": 1e-4}, r"unknown key\(s\) learning_rat"),
])
def test_config_errors_name_the_problem(raw, message):
    with pytest.raises(ConfigError, match=message):
        MTConfig.from_dict(raw)


def test_run_id_depends_on_what_is_computed_only(tmp_path):
    a = MTConfig.from_dict({"method": "lora", "budget": 0.01, "seed": 1})
    assert a.run_id == MTConfig.from_dict({**a.to_dict(), "results_dir": "elsewhere",
                                           "device": "cpu"}).run_id
    assert a.run_id != a.replace(train_size=100).run_id != a.replace(tgt_lang="fr").run_id
    preset = tmp_path / "p.yaml"
    preset.write_text("method: lora\nmethod_overrides:\n  fft: {learning_rate: 1.0e-5}\n")
    assert load_mt_config(preset, {"method": "fft"}).learning_rate == 1e-5
    assert load_mt_config(preset).learning_rate == MTConfig.learning_rate


# ---- data ---------------------------------------------------------------------------
def test_load_ntrex_aligns_lines_and_documents(ntrex):
    frame = load_ntrex(ntrex, "de")
    assert list(frame.columns) == ["line", "doc", "src", "tgt"]
    assert frame["line"].tolist() == list(range(1, len(frame) + 1))
    assert frame["tgt"].str.endswith(" de").all()


def test_split_is_by_document_deterministic_and_pair_independent(ntrex):
    splits = load_splits(ntrex, "de", dev_fraction=0.1, test_fraction=0.2)
    docs = {name: set(frame["doc"]) for name, frame in splits.items()}
    assert not docs["train"] & docs["dev"] and not docs["train"] & docs["test"] \
        and not docs["dev"] & docs["test"]
    total = len(load_ntrex(ntrex, "de"))
    assert sum(len(f) for f in splits.values()) == total
    assert len(splits["test"]) >= 0.2 * total and len(splits["dev"]) >= 0.1 * total
    again = load_splits(ntrex, "ka", dev_fraction=0.1, test_fraction=0.2)
    for name in splits:   # the same lines for every pair (the test source is shared)
        assert splits[name]["line"].tolist() == again[name]["line"].tolist()
    other_seed = split_documents(load_ntrex(ntrex, "de"), 0.1, 0.2, seed=1)
    assert other_seed != split_documents(load_ntrex(ntrex, "de"), 0.1, 0.2, seed=0)


def test_training_subsets_are_nested_whole_documents(ntrex):
    train = load_splits(ntrex, "de")["train"]
    small, large = train_subset(train, 10), train_subset(train, 30)
    assert len(small) == 10 and len(large) == 30
    assert set(small["line"]) <= set(large["line"])
    # Whole documents first: at most one document is cut.
    counts = small.groupby("doc").size()
    full = train.groupby("doc").size()
    assert sum(counts[d] < full[d] for d in counts.index) <= 1
    with pytest.raises(DataError, match=r"train_size 9999 exceeds the \d+ training sentences"):
        train_subset(train, 9999)


def test_data_errors_name_the_file(tmp_path):
    root = make_ntrex_tree(tmp_path / "ntrex", n_docs=4)
    ref = root / "newstest2019-ref.deu.txt"
    ref.write_text("\n".join(ref.read_text().splitlines()[:-1]) + "\n")
    with pytest.raises(DataError, match=r"newstest2019-ref.deu.txt: \d+ lines but"):
        load_ntrex(root, "de")
    with pytest.raises(DataError, match=r"no reference file for fr.*data prepare ntrex"):
        load_ntrex(root, "fr")
    (root / "DOCUMENT_IDS.tsv").unlink()
    with pytest.raises(DataError, match="DOCUMENT_IDS.tsv: document ids not found"):
        load_ntrex(root, "ka")


@pytest.mark.skipif(not SHARED_NTREX.is_dir(), reason="no NTREX copy in ../shared/data")
def test_real_ntrex_split_sizes():
    splits = load_splits(SHARED_NTREX, "ja")
    sizes = {name: len(frame) for name, frame in splits.items()}
    assert sum(sizes.values()) == 1997
    assert sizes["train"] >= 1500 and sizes["test"] >= 0.15 * 1997 and sizes["dev"] >= 0.05 * 1997
    assert all(frame["tgt"].str.len().gt(0).all() for frame in splits.values())
