"""`python -m peft_utils export` of MT runs: a merged or adapter export loads in a fresh
process that imports no code of this project (transformers, and peft or adapters for an
adapter export) and translates the run's test sentences exactly as the run recorded them; a
format a method has no form in, and ONNX for any MT run, is refused in one line (exit 2)."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from peft_utils.cli import main
from peft_utils.core.export import read_metadata
from peft_utils.mt.config import MTConfig
from peft_utils.mt.export import export_run
from peft_utils.mt.testing import (make_ntrex_tree, make_tiny_coded_mt_model,
                                   make_tiny_mt_model, ntrex_texts)
from peft_utils.mt.training import train_and_evaluate
from test_export import in_fresh_process

pytestmark = pytest.mark.usefixtures("one_thread")   # see conftest.one_thread

# A few steps: the tiny random model keeps emitting words (see `mt_setup`), and what it
# emits depends on every trained weight, so a wrong or missing weight shows in the text.
SETTINGS = dict(max_steps=4, eval_steps=4, max_eval_samples=6, max_source_length=24,
                max_target_length=16, batch_size=8, eval_batch_size=16, warmup_steps=0,
                select_on="loss", seed=3, device="cpu")
LEARNING_RATE = {"fft": 1e-3, "lora": 1e-2, "pfeiffer": 1e-2, "prefix": 1e-2}

# Each snippet prints {"translations": [...], "modules": [...]} for the sources in argv[2].
READ = """
import json, sys
folder, sources = sys.argv[1], json.load(open(sys.argv[2]))
meta = json.load(open(folder + "/peft_utils_export.json"))
"""
DONE = """
first = tokenizer(sources[0]).input_ids
print(json.dumps({"translations": translations, "modules": sorted(sys.modules),
                  "first_ids": tokenizer.convert_ids_to_tokens(first),
                  "forced_bos": tokenizer.convert_ids_to_tokens(
                      [getattr(GenerationConfig.from_pretrained(folder), "forced_bos_token_id",
                               None) or 0])[0]}))
"""
SNIPPETS = {
    # The documented call: the prefix and the run's decoding come from the folder.
    "merged": READ + """
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, GenerationConfig, pipeline
translator = pipeline("translation", model=folder, truncation=True)
codes = meta["settings"]["language_codes"] or {}   # mBART-50, NLLB: the pair as codes
translations = [t["translation_text"].strip() for t in translator(sources, **codes)]
# Without the pipeline: the config's prefix, generate() with the saved generation config.
model = AutoModelForSeq2SeqLM.from_pretrained(folder).eval()
tokenizer = AutoTokenizer.from_pretrained(folder)
direct = []
for text in sources:
    batch = tokenizer((model.config.prefix or "") + text, return_tensors="pt",
                      return_token_type_ids=False, truncation=True)
    direct.append(tokenizer.decode(model.generate(**batch)[0], skip_special_tokens=True).strip())
assert direct == translations, (direct, translations)
""" + DONE,
    "adapter": READ + """
import torch
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, GenerationConfig
base = AutoModelForSeq2SeqLM.from_pretrained(meta["settings"]["base_model"])
if meta["library"] == "peft":
    from peft import PeftModel
    model = PeftModel.from_pretrained(base, folder)
else:
    import adapters
    adapters.init(base)
    base.load_adapter(folder, set_active=True, use_safetensors=True)
    model = base
model.eval()
tokenizer = AutoTokenizer.from_pretrained(folder)
generation = GenerationConfig.from_pretrained(folder)
translations = []
with torch.no_grad():
    for text in sources:
        batch = tokenizer(meta["settings"]["source_prefix"] + text, return_tensors="pt",
                          return_token_type_ids=False, truncation=True)
        out = model.generate(**batch, generation_config=generation)
        translations.append(tokenizer.decode(out[0], skip_special_tokens=True).strip())
""" + DONE,
}


@pytest.fixture(scope="module")
def mt_setup(tmp_path_factory):
    """(NTREX tree, tiny model). A random tiny mBART ties its output to its input embedding,
    so after the decoder's start token (</s>) it says </s> again: every translation empty,
    nothing to compare. Its bias against </s> lowered, it emits words."""
    import torch
    from transformers import AutoModelForSeq2SeqLM

    root = tmp_path_factory.mktemp("mtexport")
    data = make_ntrex_tree(root / "ntrex", n_docs=6)
    texts = [line for f in data.glob("newstest2019-*.txt")
             for line in f.read_text(encoding="utf-8").splitlines()]
    folder = make_tiny_mt_model(root / "tiny-mt", texts)
    model = AutoModelForSeq2SeqLM.from_pretrained(folder)
    with torch.no_grad():
        model.final_logits_bias[0, model.config.eos_token_id] -= 0.3
    model.save_pretrained(folder, safe_serialization=True)
    return data, folder


@pytest.fixture(scope="module")
def trained(mt_setup, tmp_path_factory):
    """method -> the folder of a tiny finished MT run, trained on first use."""
    data, model = mt_setup
    root, done = tmp_path_factory.mktemp("mtruns"), {}

    def get(method: str):
        if method not in done:
            config = MTConfig(**SETTINGS, method=method, learning_rate=LEARNING_RATE[method],
                              data_root=str(data), model=str(model),
                              results_dir=str(root / "results"))
            done[method] = train_and_evaluate(config).run_dir
        return done[method]

    return get


def recorded(run_dir) -> tuple[list[str], list[str]]:
    """The run's test sources and the translations it recorded of them."""
    pair = json.loads((run_dir / "record.json").read_text())["run_info"]["pair"]
    table = pd.read_csv(run_dir / "predictions" / f"test-{pair}.tsv", sep="\t",
                        keep_default_na=False)
    return list(table["src"]), list(table["hypothesis"])


def assert_translates_as_the_run(fmt: str, run_dir, tmp_path) -> dict:
    out = tmp_path / f"export-{fmt}"
    meta = export_run(run_dir, out, fmt)
    assert read_metadata(out) == json.loads(json.dumps(meta))
    sources, hypotheses = recorded(run_dir)
    assert all(hypotheses), "the run translated nothing: there is nothing to compare"
    got = in_fresh_process(SNIPPETS[fmt], out, sources, tmp_path)
    assert not any(m.startswith("peft_utils") for m in got["modules"])
    assert got["translations"] == hypotheses
    return {**meta, "loaded": got}


@pytest.mark.slow
@pytest.mark.parametrize("method", ["fft", "lora"])
def test_merged_mt_export_translates_with_the_pipeline_alone(method, trained, tmp_path):
    meta = assert_translates_as_the_run("merged", trained(method), tmp_path)
    assert meta["translations_differing"] == 0 and meta["checked_on"]["sentences"] == 6
    assert meta["src_lang"] == "en" and meta["tgt_lang"] == "de"
    assert set(meta["scores"]["test"]) == {"bleu", "chrf"}
    assert "pipeline('translation', model=OUT" in meta["load"]
    assert not list((tmp_path / "export-merged").glob("adapter*"))


@pytest.mark.slow
@pytest.mark.parametrize("method", ["lora", "pfeiffer"])
def test_adapter_mt_export_loads_onto_the_base_model(method, trained, tmp_path):
    meta = assert_translates_as_the_run("adapter", trained(method), tmp_path)
    assert not (tmp_path / "export-adapter" / "model.safetensors").exists()   # not a full copy
    assert meta["library"] == {"lora": "peft", "pfeiffer": "adapters"}[method]


@pytest.mark.parametrize("method, fmt, reason", [
    ("pfeiffer", "merged", "pfeiffer cannot be merged"),
    ("pfeiffer", "onnx", "optimum-cli export onnx"),
    pytest.param("fft", "adapter", "no adapter to save", marks=pytest.mark.slow)])
def test_a_format_an_mt_run_lacks_is_refused_in_one_line(method, fmt, reason, trained,
                                                         tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["export", str(trained(method)), str(out), "--format", fmt]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and reason in err and "--format" in err
    assert not out.exists() and not list(tmp_path.glob(".out.*"))


@pytest.mark.slow
def test_an_adapters_prefix_run_has_no_export_and_says_what_serves_it(trained, tmp_path,
                                                                      capsys):
    """The adapters library's prefixes are one pool every layer references: no safetensors
    file holds them, so the refusal points to the run folder (and `predict` with it)."""
    run_dir, out = trained("prefix"), tmp_path / "out"
    capsys.readouterr()
    assert main(["export", str(run_dir), str(out), "--format", "adapter"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(run_dir) in err
    assert "cannot save as safetensors" in err and "predict RUN_DIR" in err
    assert not out.exists() and not list(tmp_path.glob(".out.*"))


@pytest.mark.slow
@pytest.mark.parametrize("family, codes", [
    ("nllb", {"src_lang": "eng_Latn", "tgt_lang": "deu_Latn"}),
    ("mbart50", {"src_lang": "en_XX", "tgt_lang": "de_DE"})])
def test_a_language_code_model_exports_and_predicts_with_the_runs_pair(family, codes,
                                                                       mt_setup, tmp_path):
    """NLLB and mBART-50 take the pair as codes: the tokenizer puts the source code first
    and generation forces the target code. Both exports load in a fresh process with the
    run's pair (the tiny model's tokenizer defaults to another pair), the pipeline called
    with the metadata's codes, and translate as the run did; so does `predict`."""
    data, _ = mt_setup
    model = make_tiny_coded_mt_model(tmp_path / family, ntrex_texts(data), family)
    run_dir = train_and_evaluate(MTConfig(
        **SETTINGS, method="lora", learning_rate=LEARNING_RATE["lora"], data_root=str(data),
        model=str(model), results_dir=str(tmp_path / "results"))).run_dir
    sources, hypotheses = recorded(run_dir)
    for fmt in ("merged", "adapter"):
        meta = assert_translates_as_the_run(fmt, run_dir, tmp_path)
        assert meta["settings"]["language_codes"] == codes
        assert meta["loaded"]["first_ids"][0] == codes["src_lang"]
        assert meta["loaded"]["forced_bos"] == codes["tgt_lang"]
    call = f"(texts, src_lang='{codes['src_lang']}', tgt_lang='{codes['tgt_lang']}')"
    assert call in read_metadata(tmp_path / "export-merged")["load"]
    table = tmp_path / "in.csv"
    pd.DataFrame({"text": sources}).to_csv(table, index=False)
    for source in (run_dir, tmp_path / "export-merged", tmp_path / "export-adapter"):
        out = tmp_path / f"out-{source.name}.csv"
        assert main(["predict", str(source), "--input", str(table), "--out", str(out)]) == 0
        assert list(pd.read_csv(out, keep_default_na=False)["translation"]) == hypotheses


# ---- predict: translations of a table or of lines -------------------------------------------
@pytest.mark.slow
def test_predict_translates_a_table_as_the_run_did_from_the_run_and_its_exports(trained,
                                                                                tmp_path):
    run_dir = trained("lora")
    sources, hypotheses = recorded(run_dir)
    table = tmp_path / "in.jsonl"
    table.write_text("".join(json.dumps({"id": i, "text": s}) + "\n"
                             for i, s in enumerate(sources)), encoding="utf-8")
    for fmt in ("merged", "adapter"):
        export_run(run_dir, tmp_path / fmt, fmt)
    for source in (run_dir, tmp_path / "merged", tmp_path / "adapter"):
        out = tmp_path / f"out-{source.name}.tsv"
        assert main(["predict", str(source), "--input", str(table), "--out", str(out)]) == 0
        frame = pd.read_csv(out, sep="\t", keep_default_na=False)
        assert list(frame["id"]) == list(range(len(sources)))   # the input's columns kept
        assert list(frame["translation"]) == hypotheses


def test_predict_translates_lines_and_refuses_a_folder(trained, tmp_path, monkeypatch, capsys):
    import io

    run_dir = trained("pfeiffer")
    sources, hypotheses = recorded(run_dir)
    capsys.readouterr()   # what training printed
    monkeypatch.setattr("sys.stdin", io.StringIO("\n".join(sources[:3]) + "\n\n"))
    assert main(["predict", str(run_dir), "--input", "-"]) == 0
    printed = pd.read_csv(io.StringIO(capsys.readouterr().out), keep_default_na=False)
    assert list(printed["text"]) == sources[:3] and list(printed["translation"]) == hypotheses[:3]
    assert main(["predict", str(run_dir), "--input", str(tmp_path), "--out", "x.csv"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "translate" in err and str(tmp_path) in err
