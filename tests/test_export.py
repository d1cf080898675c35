"""`python -m peft_utils export`: a finished run's model loads with its plain libraries alone,
in a fresh process that imports no code of this project, and predicts what the run recorded
(top-1 labels identical, logits within ONNX_TOLERANCE); a method with no form in a format is
refused with the reason and exit status 2."""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from peft_utils.classification.config import RunConfig
from peft_utils.classification.export import export_run
from peft_utils.classification.run_data import load_frames
from peft_utils.classification.training import (encode, load_run, predict_logits,
                                                train_and_evaluate)
from peft_utils.cli import main
from peft_utils.core.config import ConfigError
from peft_utils.core.export import METADATA, ONNX_TOLERANCE, read_metadata
from test_methods import TINY

# Each snippet prints {"logits": [...], "labels": [...], "modules": [...]} for the texts in
# argv[2], one at a time (no padding), truncated as the export's tokenizer says.
READ = """
import json, sys
folder, texts = sys.argv[1], json.load(open(sys.argv[2]))
meta = json.load(open(folder + "/peft_utils_export.json"))
"""
TORCH_LOGITS = """
import torch
from transformers import AutoTokenizer
tokenizer = AutoTokenizer.from_pretrained(folder)
with torch.no_grad():
    logits = [model(**tokenizer(t, truncation=True, return_tensors="pt")).logits[0].tolist()
              for t in texts]
labels = [model.config.id2label[int(torch.tensor(row).argmax())] for row in logits]
"""
DONE = """
print(json.dumps({"logits": logits, "labels": labels, "modules": sorted(sys.modules)}))
"""
SNIPPETS = {
    "merged": READ + """
from transformers import AutoModelForSequenceClassification, pipeline
model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
""" + TORCH_LOGITS + """
piped = [p["label"] for p in pipeline("text-classification", model=folder, truncation=True)(texts)]
assert piped == labels, (piped, labels)
""" + DONE,
    "adapter": READ + """
from transformers import AutoModelForSequenceClassification
settings = meta["settings"]
base = AutoModelForSequenceClassification.from_pretrained(
    settings["base_model"], id2label={int(k): v for k, v in meta["id2label"].items()},
    label2id={v: int(k) for k, v in meta["id2label"].items()},
    problem_type=meta["problem_type"])
if meta["library"] == "peft":
    from peft import PeftModel
    model = PeftModel.from_pretrained(base, folder)
else:
    import adapters
    adapters.init(base)
    base.load_adapter(folder, set_active=True, use_safetensors=True)
    model = base
model.eval()
""" + TORCH_LOGITS + DONE,
    "onnx": READ + """
import numpy as np, onnxruntime
from transformers import AutoTokenizer
session = onnxruntime.InferenceSession(folder + "/model.onnx")
tokenizer = AutoTokenizer.from_pretrained(folder)
id2label = json.load(open(folder + "/config.json"))["id2label"]
names = [i.name for i in session.get_inputs()]
encoded = [tokenizer(t, truncation=True, return_tensors="np") for t in texts]
logits = [session.run(None, {n: e[n] for n in names})[0][0].tolist() for e in encoded]
labels = [id2label[str(int(np.argmax(row)))] for row in logits]
""" + DONE,
}


def tiny_run(root, sib_root, tiny_model, method: str, **kw) -> RunConfig:
    return RunConfig(dataset="sib200", data_root=str(sib_root), model=str(tiny_model),
                     method=method, method_config=TINY.get(method), train_langs=["en", "fr"],
                     eval_langs=["en", "fr"], max_length=64, batch_size=8, eval_batch_size=16,
                     learning_rate=1e-2, warmup_steps=0, max_steps=4, eval_steps=2, seed=3,
                     # A fast head: 4 steps already predict several labels, so top-1 is tested
                     head_learning_rate=0.1, results_dir=str(root / "results"), **kw)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, sib_root, tiny_model):
    """(method, pooling) -> the folder of a tiny finished run, trained on first use."""
    root, done = tmp_path_factory.mktemp("export"), {}

    def get(method: str, pooling: str = "cls"):
        if (method, pooling) not in done:
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                config = tiny_run(root, sib_root, tiny_model, method, pooling=pooling)
                done[method, pooling] = train_and_evaluate(config).run_dir
            finally:
                torch.set_num_threads(threads)
        return done[method, pooling]

    return get


def reference(run_dir):
    """(test texts, the run's logits on them, its recorded test predictions)."""
    config, built, tokenizer = load_run(run_dir)
    frame = load_frames(config)["test"]
    split = encode(frame, tokenizer, config, built.labels)
    logits = predict_logits(built.model.eval(), split, tokenizer, 16, config)
    recorded = pd.read_csv(run_dir / "predictions" / "test-examples.csv")["pred"].tolist()
    return list(frame["text"]), logits, recorded


def in_fresh_process(snippet: str, folder, inputs: list[str], tmp_path) -> dict:
    """`snippet` run by a new interpreter that cannot import this project, on `folder` and a
    JSON file of `inputs`; its last output line, as JSON."""
    inputs_file = tmp_path / "inputs.json"
    inputs_file.write_text(json.dumps(inputs))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", snippet, str(folder), str(inputs_file)],
                          cwd=tmp_path, env={**env, "OMP_NUM_THREADS": "1"},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def assert_predicts_the_run(fmt: str, run_dir, tmp_path) -> dict:
    out = tmp_path / f"export-{fmt}"
    meta = export_run(run_dir, out, fmt)
    assert read_metadata(out) == json.loads(json.dumps(meta))
    texts, logits, recorded = reference(run_dir)
    got = in_fresh_process(SNIPPETS[fmt], out, texts, tmp_path)
    assert not any(m.startswith("peft_utils") for m in got["modules"])
    np.testing.assert_allclose(np.asarray(got["logits"]), logits, rtol=0, atol=ONNX_TOLERANCE)
    # Top-1 labels identical wherever the run's own top two are told apart at all.
    top2 = np.sort(logits, axis=1)[:, -2:]
    clear = (top2[:, 1] - top2[:, 0]) > ONNX_TOLERANCE
    assert clear.mean() > 0.9
    assert [g for g, c in zip(got["labels"], clear) if c] == \
        [r for r, c in zip(recorded, clear) if c]
    return meta


@pytest.mark.parametrize("method", [
    "lora", pytest.param("fft", marks=pytest.mark.slow), pytest.param("ia3", marks=pytest.mark.slow),
    pytest.param("dvora", marks=pytest.mark.slow)])
def test_merged_export_loads_with_transformers_alone(method, trained, tmp_path):
    meta = assert_predicts_the_run("merged", trained(method), tmp_path)
    assert meta["merge_max_diff"] <= ONNX_TOLERANCE and meta["standard_head"]
    id2label = json.loads((tmp_path / "export-merged" / "config.json").read_text())["id2label"]
    assert [id2label[str(i)] for i in range(len(id2label))] == meta["settings"]["labels"]
    assert not list((tmp_path / "export-merged").glob("adapter*"))


@pytest.mark.parametrize("method", ["lora", "pfeiffer",
                                    pytest.param("ia3", marks=pytest.mark.slow)])
def test_adapter_export_loads_onto_the_base_model(method, trained, tmp_path):
    meta = assert_predicts_the_run("adapter", trained(method), tmp_path)
    assert not (tmp_path / "export-adapter" / "model.safetensors").exists()   # not a full copy
    assert meta["library"] in ("peft", "adapters")


@pytest.mark.parametrize("method, pooling", [
    ("lora", "mean"), pytest.param("fft", "cls", marks=pytest.mark.slow),
    pytest.param("ia3", "cls", marks=pytest.mark.slow)])
def test_onnx_export_carries_pooling_and_head(method, pooling, trained, tmp_path):
    meta = assert_predicts_the_run("onnx", trained(method, pooling), tmp_path)
    assert 0 <= meta["onnx_max_diff"] <= meta["onnx_tolerance"] == ONNX_TOLERANCE
    assert meta["notes"] == [] and meta["settings"]["pooling"] == pooling


def test_a_mean_pooling_merged_export_says_its_head_is_not_standard(trained, tmp_path, capsys):
    assert main(["export", str(trained("lora", "mean")), str(tmp_path / "out")]) == 0
    meta = read_metadata(tmp_path / "out")
    assert meta["standard_head"] is False and "pooling: mean" in meta["notes"][0]
    assert "note: the run's head reads the mean" in capsys.readouterr().err


@pytest.mark.parametrize("method, fmt, reason", [
    ("pfeiffer", "merged", "pfeiffer cannot be merged"),
    ("pfeiffer", "onnx", "pfeiffer cannot be merged"),
    ("fft", "adapter", "no adapter to save")])
def test_a_format_a_method_lacks_is_refused_in_one_line(method, fmt, reason, trained, tmp_path,
                                                        capsys):
    out = tmp_path / "out"
    run_dir = trained(method)
    capsys.readouterr()   # what training the run printed (its data), if it trained here
    assert main(["export", str(run_dir), str(out), "--format", fmt]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and reason in err and "--format" in err
    assert not out.exists() and not list(tmp_path.glob(".out.*"))


def test_export_refuses_a_non_run_and_an_existing_folder(trained, tmp_path, capsys):
    assert main(["export", str(tmp_path), str(tmp_path / "out")]) == 2
    assert "no record.json" in capsys.readouterr().err
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(ConfigError, match="--force"):
        export_run(trained("lora"), out, "merged")
    assert (out / "keep.txt").read_text() == "mine"
    export_run(trained("lora"), out, "merged", force=True)   # replaced whole, once written
    assert (out / METADATA).is_file() and not (out / "keep.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]


def test_a_large_vocabulary_export_loads_without_the_false_tokenizer_warning(tmp_path):
    """transformers 4.57.3-4.x warns that any local tokenizer over 100k pieces (the e5 and
    mBART-50 ones) has "an incorrect regex pattern" unless config.json says it was written by
    4.57.2 or earlier (huggingface/transformers#44031). An export's config.json is stamped so
    (the metadata keeps the real writer); tokenization is unchanged; a Mistral config is not
    stamped."""
    import transformers
    from packaging.version import Version
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import AutoConfig, AutoTokenizer, PreTrainedTokenizerFast

    from peft_utils.core.export import finish_export
    from peft_utils.core.modeling import QUIET_WRITER, stamp_quiet_writer

    if not Version(QUIET_WRITER) < Version(transformers.__version__) < Version("5"):
        pytest.skip(f"transformers {transformers.__version__} does not give that warning")
    vocab = {f"w{i}": i for i in range(100_050)} | {"[UNK]": 100_050}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]").save_pretrained(tmp_path)
    AutoConfig.for_model("bert", vocab_size=len(vocab), hidden_size=8, num_hidden_layers=1,
                         num_attention_heads=1, intermediate_size=8).save_pretrained(tmp_path)

    def load_ids() -> tuple[list[int], bool]:
        """The ids of three words, and whether loading the tokenizer warned."""
        warnings: list[str] = []
        handler = logging.Handler(logging.WARNING)
        handler.emit = lambda record: warnings.append(record.getMessage())
        library = logging.getLogger("transformers")
        verbosity = transformers.logging.get_verbosity()
        transformers.logging.set_verbosity_warning()   # whatever an earlier test left
        library.addHandler(handler)
        try:
            ids = AutoTokenizer.from_pretrained(tmp_path)("w7 w100049 zz").input_ids
        finally:
            library.removeHandler(handler)
            transformers.logging.set_verbosity(verbosity)
        return ids, any("incorrect regex pattern" in w for w in warnings)

    before, warned = load_ids()
    assert warned   # the folder as transformers wrote it
    meta = {"format": "merged"}
    finish_export(tmp_path, meta)
    assert meta["written_with"] == {"transformers": transformers.__version__,
                                    "config_json_says": QUIET_WRITER}
    assert read_metadata(tmp_path)["written_with"] == meta["written_with"]
    after, warned = load_ids()
    assert not warned and after == before == [7, 100_049, 100_050]
    assert stamp_quiet_writer(tmp_path / "config.json") is None   # already quiet

    mistral = tmp_path / "mistral.json"
    mistral.write_text(json.dumps({"model_type": "mistral",
                                   "transformers_version": transformers.__version__}))
    assert stamp_quiet_writer(mistral) is None
    assert json.loads(mistral.read_text())["transformers_version"] == transformers.__version__
