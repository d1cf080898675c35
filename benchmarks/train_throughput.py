"""Training throughput of each method: the paper's pipeline vs this project's, in one run.

(a) paper: every batch padded to 512 tokens, fixed batches (no length grouping), eager
attention. (b) this project: dynamic padding, length-grouped batches, SDPA attention.
Both on the offline default model (multilingual-e5-small) and real SIB-200 / BRIGHTER texts.
Each measurement runs in its own process so peak memory (RSS) is per method.
Writes benchmarks/results/latest.json and latest.md; ratios are what to compare, since this
machine is shared and absolute timings drift.

    python benchmarks/train_throughput.py [--steps 4] [--batch 16]
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import platform
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("fft", "lora", "pfeiffer", "houlsby")
# The fixed-shape step fractions: the methods as the study runs them, and LoRA without its
# input dropout (a Bernoulli mask per target module per step: most of what LoRA's step adds).
SHAPE_VARIANTS = {**{m: (m, {}) for m in METHODS}, "lora_dropout0": ("lora", {"lora_dropout": 0.0})}
MODEL = ROOT / "models" / "multilingual-e5-small"


def load_texts(dataset: str, n: int) -> list[str]:
    from peft_utils.data import load_split

    root = ROOT / "data" / dataset
    langs = ["en", "fr", "de", "it", "pl", "ru"] if dataset == "sib200" else ["en", "de", "ru", "es"]
    frame = load_split(dataset, root, "train", langs=langs)
    return frame.sample(n=n, random_state=0)["text"].tolist()


def batches(lengths: list[int], batch: int, grouped: bool) -> list[list[int]]:
    order = sorted(range(len(lengths)), key=lambda i: lengths[i]) if grouped else list(range(len(lengths)))
    groups = [order[i:i + batch] for i in range(0, len(order), batch)]
    if grouped:  # as the HF length-grouped sampler: random order of similar-length batches
        import random
        random.Random(0).shuffle(groups)
    return groups


def measure(spec: dict) -> dict:
    """One method × pipeline × data set: time `steps` optimizer steps after one warm-up."""
    import torch

    from peft_utils.classification.config import RunConfig
    from peft_utils.classification.models import build_model, load_tokenizer
    from peft_utils.core.devices import set_cpu_threads
    from peft_utils.core.modeling import seed_everything

    set_cpu_threads()
    paper = spec["pipeline"] == "paper"
    config = RunConfig(dataset=spec["dataset"], method=spec["method"], model=str(MODEL),
                       attention="eager" if paper else "sdpa", reduction_factor=16)
    seed_everything(0)
    model = build_model(config).model
    model.train()
    tokenizer = load_tokenizer(str(MODEL))
    texts = load_texts(spec["dataset"], spec["batch"] * (spec["steps"] + 1))
    enc = tokenizer(texts, truncation=True, max_length=512)
    lengths = [len(x) for x in enc["input_ids"]]
    groups = batches(lengths, spec["batch"], grouped=not paper)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-5, fused=True)   # as the runs' Trainer
    n_labels = model.config.num_labels
    multilabel = config.multilabel

    def step(idx: list[int]) -> tuple[float, int, int]:
        rows = [{"input_ids": enc["input_ids"][i], "attention_mask": enc["attention_mask"][i]} for i in idx]
        batch = tokenizer.pad(rows, padding="max_length" if paper else "longest",
                              max_length=512 if paper else None, return_tensors="pt")
        labels = (torch.zeros(len(idx), n_labels) if multilabel
                  else torch.zeros(len(idx), dtype=torch.long))
        start = time.perf_counter()
        loss = model(**batch, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return time.perf_counter() - start, int(batch["attention_mask"].sum()), batch["input_ids"].numel()

    step(groups[0])  # warm-up: allocations, kernel selection
    timings = [step(g) for g in groups[1:spec["steps"] + 1]]
    seconds = sum(t for t, _, _ in timings)
    examples = spec["batch"] * len(timings)
    return {**spec, "seconds": seconds, "examples_per_s": examples / seconds,
            "tokens_per_s": sum(t for _, t, _ in timings) / seconds,
            "padded_tokens_per_s": sum(p for _, _, p in timings) / seconds,
            "step_s": seconds / len(timings), "real_tokens": sum(t for _, t, _ in timings),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def fixed_shape_step(spec: dict) -> dict:
    """Step time of a method at one fixed shape (batch × seq), for PEFT/FFT fractions and MFU."""
    import torch

    from peft_utils.classification.config import RunConfig
    from peft_utils.classification.models import build_model
    from peft_utils.core.devices import set_cpu_threads
    from peft_utils.core.modeling import seed_everything

    set_cpu_threads()
    config = RunConfig(dataset="sib200", method=spec["method"], model=str(MODEL), reduction_factor=16,
                       **spec.get("settings", {}))
    seed_everything(0)
    built = build_model(config)
    model = built.model
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-5, fused=True)
    ids = torch.randint(5, 200_000, (spec["batch"], spec["seq"]))
    labels = torch.zeros(spec["batch"], dtype=torch.long)
    times = []
    for i in range(spec["steps"] + 1):
        start = time.perf_counter()
        model(input_ids=ids, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if i:
            times.append(time.perf_counter() - start)
    cfg = model.config
    embed = sum(p.numel() for n, p in model.named_parameters() if "embeddings" in n)
    non_embedding = built.report["backbone"] - embed
    return {**spec, "step_s": min(times), "non_embedding_params": non_embedding,
            "layers": cfg.num_hidden_layers, "hidden": cfg.hidden_size,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def peak_matmul_flops(size: int = 2048, repeats: int = 10) -> float:
    from peft_utils.core.devices import set_cpu_threads
    from peft_utils.core.timing import matmul_flops

    set_cpu_threads()
    return matmul_flops(size, repeats)


def in_child(fn, spec):
    with mp.get_context("spawn").Pool(1) as pool:
        return pool.apply(fn, (spec,))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seq", type=int, default=64, help="main shape for fractions and MFU")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args()

    runs = []
    for dataset in ("sib200", "brighter"):
        for method in METHODS:
            for pipeline in ("paper", "project"):
                spec = dict(dataset=dataset, method=method, pipeline=pipeline, batch=args.batch,
                            steps=args.steps if pipeline == "project" else max(2, args.steps // 2))
                runs.append(in_child(measure, spec))
                print(json.dumps({k: runs[-1][k] for k in ("dataset", "method", "pipeline", "examples_per_s")}),
                      flush=True)
    shape = {name: in_child(fixed_shape_step, dict(method=method, settings=settings, batch=args.batch,
                                                   seq=args.seq, steps=args.steps))
             for name, (method, settings) in SHAPE_VARIANTS.items()}
    peak = in_child(peak_matmul_flops, 2048)

    def rate(dataset, method, pipeline):
        return next(r["examples_per_s"] for r in runs
                    if (r["dataset"], r["method"], r["pipeline"]) == (dataset, method, pipeline))

    fft = shape["fft"]
    tokens = args.batch * args.seq
    # Training FLOPs: 6 × non-embedding parameters × tokens, plus attention scores and
    # values (2 matmuls of seq × seq × hidden per layer, ×3 for forward + backward).
    flops = 6 * fft["non_embedding_params"] * tokens + \
        3 * 2 * 2 * fft["layers"] * args.batch * args.seq ** 2 * fft["hidden"]
    result = {
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "threads": __import__("torch").get_num_threads()},
        "model": "multilingual-e5-small (offline default)",
        "speedup_vs_paper_pipeline": {m: rate("sib200", m, "project") / rate("sib200", m, "paper")
                                      for m in METHODS},
        "speedup_vs_paper_pipeline_brighter": {m: rate("brighter", m, "project") / rate("brighter", m, "paper")
                                               for m in METHODS},
        "peft_step_fraction": {m: shape[m]["step_s"] / fft["step_s"] for m in SHAPE_VARIANTS if m != "fft"},
        "mfu_fft": (flops / fft["step_s"]) / peak,
        "peak_matmul_flops": peak,
        "fft_achieved_flops": flops / fft["step_s"],
        "main_shape": {"batch": args.batch, "seq": args.seq},
        "peak_memory_mb": {m: shape[m]["peak_rss_mb"] for m in SHAPE_VARIANTS},
        "runs": runs,
    }
    # The headline: SIB-200 examples/s, b/a, averaged over methods (each method also listed).
    result["speedup_vs_paper_pipeline"]["mean"] = sum(
        result["speedup_vs_paper_pipeline"][m] for m in METHODS) / len(METHODS)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "latest.json").write_text(json.dumps(result, indent=2))
    (out / "latest.md").write_text(markdown(result, runs))
    print(markdown(result, runs))
    return 0


def markdown(result: dict, runs: list[dict]) -> str:
    lines = ["| data | method | paper ex/s | project ex/s | b/a | project tokens/s | peak RSS MB |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for dataset in ("sib200", "brighter"):
        for method in METHODS:
            a = next(r for r in runs if (r["dataset"], r["method"], r["pipeline"]) == (dataset, method, "paper"))
            b = next(r for r in runs if (r["dataset"], r["method"], r["pipeline"]) == (dataset, method, "project"))
            lines.append(f"| {dataset} | {method} | {a['examples_per_s']:.2f} | {b['examples_per_s']:.2f} | "
                         f"{b['examples_per_s'] / a['examples_per_s']:.1f}× | {b['tokens_per_s']:.0f} | "
                         f"{b['peak_rss_mb']:.0f} |")
    frac = result["peft_step_fraction"]
    lines += ["", f"PEFT step time / FFT step time at batch {result['main_shape']['batch']} × "
              f"{result['main_shape']['seq']} tokens: " + ", ".join(f"{m} {v:.2f}" for m, v in frac.items()),
              f"FFT MFU: {result['mfu_fft']:.1%} of the measured peak matmul rate "
              f"({result['peak_matmul_flops'] / 1e9:.0f} GFLOP/s)"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
