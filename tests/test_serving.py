"""What using a model costs (core.serving): merged and unmerged models agree for every method
that merges, methods that cannot merge say so, every complete run records its inference
block and stage times, and serving bytes follow what a run must keep."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from peft_utils.classification.config import RunConfig
from peft_utils.classification.inference import collator, infer_logits
from peft_utils.classification.models import ADAPTER_NAME, build_model, load_tokenizer
from peft_utils.classification.run_data import load_frames
from peft_utils.classification.training import encode, train_and_evaluate
from peft_utils.core import methods, serving
from peft_utils.core.modeling import seed_everything
from peft_utils.core.outputs import DASH
from peft_utils.core.runs import read_record, validate_record
from test_methods import TINY

# fp32 on CPU: folding W + BA into W moves the logits by rounding only.
TOLERANCE = 1e-4


def config_for(tmp_path, root, model, method: str, **kw) -> RunConfig:
    return RunConfig(dataset="sib200", data_root=str(root), model=str(model), method=method,
                     method_config=TINY.get(method), train_langs=["en", "fr"],
                     eval_langs=["en", "fr"], max_length=64, batch_size=8, eval_batch_size=16,
                     warmup_steps=0, max_steps=4, eval_steps=2, seed=3,
                     results_dir=str(tmp_path / "results"), **kw)


def merging():
    return [m for m in methods.names("classification") if methods.get(m).merges]


@pytest.mark.parametrize("method", merging())
def test_merged_model_predicts_what_the_trained_one_does(method, tmp_path, sib_root,
                                                         tiny_model):
    config = config_for(tmp_path, sib_root, tiny_model, method)
    seed_everything(0)
    built = build_model(config)
    model = built.model.eval()
    tokenizer = load_tokenizer(config.model)
    dev = encode(load_frames(config)["dev"], tokenizer, config, built.labels)
    collate = collator(tokenizer, config)
    start = infer_logits(model, dev.rows, 16, collate)
    with torch.no_grad():   # a trained-looking update: zero-initialised parts would hide errors
        for name, param in model.named_parameters():
            if param.requires_grad and "classifier" not in name:
                param.add_(0.05 * torch.randn_like(param))
    before = infer_logits(model, dev.rows, 16, collate)
    assert np.abs(before - start).max() > 1e-3   # the method's weights matter
    twin = serving.merged_copy(model, methods.get(method), ADAPTER_NAME)
    merged = infer_logits(twin, dev.rows, 16, collate)
    np.testing.assert_allclose(merged, before, rtol=0, atol=TOLERANCE)
    # The trained model is left as it was (the merge happened on a copy).
    np.testing.assert_array_equal(infer_logits(model, dev.rows, 16, collate), before)
    # ... and the copy is the plain model, its base weights with the update folded in.
    if methods.get(method).library == "peft":
        from peft.tuners.tuners_utils import BaseTunerLayer

        assert not any(isinstance(m, BaseTunerLayer) for m in twin.modules())
        plain = build_model(config.replace(method="fft", method_config=None)).model
        assert {n for n, _ in twin.named_parameters()} == {n for n, _ in plain.named_parameters()}
    twin_params = dict(twin.named_parameters())
    before = {n.replace("base_model.model.", "").replace(".base_layer", ""): p
              for n, p in model.named_parameters()}
    assert any(not torch.equal(before[n], p) for n, p in twin_params.items() if n in before)


def test_merge_status_says_which_methods_cannot_merge():
    assert serving.merge_status(methods.get("lora")) == "merges"
    assert serving.merge_status(methods.get("pfeiffer")) == "cannot merge"
    assert serving.merge_status(methods.get("prompt")) == "cannot merge"
    assert serving.merge_status(methods.get("fft")) == "nothing to merge"


def test_merge_check_catches_a_merge_that_changes_predictions(tmp_path, sib_root, tiny_model):
    """measure_serving compares the merged copy's outputs with the evaluation's: a merge
    that changes the weights beyond the update shows in merge_max_diff."""
    config = config_for(tmp_path, sib_root, tiny_model, "lora")
    seed_everything(0)
    built = build_model(config)
    model = built.model.eval()
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad:
                param.add_(0.05 * torch.randn_like(param))
    tokenizer = load_tokenizer(config.model)
    rows = encode(load_frames(config)["test"], tokenizer, config, built.labels).rows
    collate = collator(tokenizer, config)
    subject = serving.Subject(model, methods.get("lora"), ADAPTER_NAME,
                              lambda m, part, size: infer_logits(m, part, size, collate),
                              lambda a, b: float(np.abs(a - b).max()), rows, 16)
    logits, per_s = serving.timed_pass(model, subject.infer, rows, 16)
    block = serving.measure_serving(subject, logits, per_s)
    assert block["merge_max_diff"] <= TOLERANCE and block["rows"] == len(rows)

    def broken_merge():
        twin = serving.merged_copy(model, methods.get("lora"), ADAPTER_NAME)
        with torch.no_grad():
            next(p for n, p in twin.named_parameters() if "query.weight" in n).mul_(1.5)
        return twin

    subject.merged = broken_merge
    assert serving.measure_serving(subject, logits, per_s)["merge_max_diff"] > 10 * TOLERANCE


def test_spread_covers_short_and_long_rows():
    rows = [{"input_ids": [0] * n} for n in (5, 1, 9, 3, 7)]
    picked = [len(r["input_ids"]) for r in serving.spread(rows, 3)]
    assert picked == [1, 5, 9]
    assert len(serving.spread(rows, 10)) == 5


@pytest.fixture(scope="module")
def finished(tmp_path_factory, sib_root, tiny_model):
    """A results folder with one LoRA, one Pfeiffer and one FFT run of the same cell."""
    root = tmp_path_factory.mktemp("serving")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        runs = {m: train_and_evaluate(config_for(root, sib_root, tiny_model, m))
                for m in ("lora", "pfeiffer", "fft")}
    finally:
        torch.set_num_threads(threads)
    return root / "results", runs


@pytest.mark.parametrize("method", ["lora", "pfeiffer", "fft"])
def test_every_complete_run_records_inference_and_stage_times(method, finished):
    record = read_record(finished[1][method].run_dir)
    validate_record(record)
    block = record["inference"]
    assert block["unmerged"]["examples_per_s"] > 0
    assert block["unmerged"]["latency_ms_p95"] >= block["unmerged"]["latency_ms_median"] > 0
    if method == "lora":
        assert block["merge"] == "merges" and block["merged"]["examples_per_s"] > 0
        assert block["merge_max_diff"] <= TOLERANCE
        assert block["serve_bytes"] < block["full_model_bytes"] / 4
    else:
        assert block["merged"] is None and block["merge_max_diff"] is None
    if method == "fft":
        assert block["serve_bytes"] == block["full_model_bytes"]
    phases = record["costs"]["phases"]
    assert {"prepare_s", "train_s", "evaluate_s", "probe_s", "save_s",
            "inference_s"} <= set(phases)
    assert phases["train_s"] >= record["costs"]["train_wall_s"] * 0.99


def test_bench_inference_times_runs_side_by_side(finished, capsys):
    from peft_utils.cli import main
    from peft_utils.core.inference_bench import BENCH_FILE, read_bench

    root, runs = finished
    assert main(["bench-inference", str(root), "--rounds", "2"]) == 0
    bench = read_bench(root)
    assert (root / BENCH_FILE).is_file() and bench["rounds"] == 2
    assert set(bench["runs"]) == {r.run_id for r in runs.values()}
    lora = bench["runs"][runs["lora"].run_id]
    assert lora["merged"]["examples_per_s"] > 0 and lora["method"] == "lora"
    assert bench["runs"][runs["pfeiffer"].run_id]["merged"] is None
    assert len({tuple(e["group"]) for e in bench["runs"].values()}) == 1   # one comparison
    # ONNX Runtime timed on the same rows where the method has an ONNX form (merges, or adds
    # nothing: FFT), not for an adapter that cannot merge.
    for method in ("lora", "fft"):
        onnx = bench["runs"][runs[method].run_id]["onnx"]
        assert onnx["examples_per_s"] > 0 and onnx["latency_ms_p95"] >= onnx["latency_ms_median"]
    assert bench["runs"][runs["pfeiffer"].run_id]["onnx"] is None
    printed = capsys.readouterr().out
    assert runs["fft"].run_id in printed and "onnx" in printed
    # The report's inference table shows it, with its ratio to FFT.
    display = inference_display(root)
    fft_ms = bench["runs"][runs["fft"].run_id]["unmerged"]["latency_ms_median"]
    assert list(display["ONNX vs FFT"]) == [f"{o / fft_ms:,.2f}×" if o else DASH for o in (
        (bench["runs"][runs[m].run_id]["onnx"] or {}).get("latency_ms_median")
        for m in display["method"])]
    # A pattern narrows what is measured; earlier entries are kept. --no-onnx times none.
    assert main(["bench-inference", str(root), "--runs", "*-lora-*", "--rounds", "1",
                 "--no-onnx"]) == 0
    again = read_bench(root)
    assert again["rounds"] == 1 and set(again["runs"]) == set(bench["runs"])
    assert again["runs"][runs["fft"].run_id] == bench["runs"][runs["fft"].run_id]
    assert "onnx" not in again["runs"][runs["lora"].run_id]


def inference_display(root):
    """The classification report's inference table of the results folder `root`, for
    reading."""
    from peft_utils.classification.analysis import load_results
    from peft_utils.classification.analysis import serving as S

    return S.inference_display(S.inference_table(load_results(root)))


def test_a_trial_has_no_inference_block(tmp_path, sib_root, tiny_model):
    config = config_for(tmp_path, sib_root, tiny_model, "lora",
                        tuning={"stage": "tune", "group": "g", "trial": 0, "values": {}})
    record = read_record(train_and_evaluate(config).run_dir)
    assert record["inference"] is None
