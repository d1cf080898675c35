"""What a GPU does with this project, in one short run (at most `--budget-s`, 300 s on a GPU):

1. training bench: per method, the time of an optimizer step at one fixed shape on `--model`
   (the offline default, multilingual-e5-small), in bf16 autocast on a GPU (fp16 where the
   GPU has no bf16, fp32 on CPU); the step time as a ratio to FFT's, measured side by side
   in this one process, and the MFU;
2. a paper-shaped step per method: XLM-R-large built from its shipped config with random
   weights (no download), batch 16 × 512 tokens, the paper's method settings (the ST1 preset
   of `--paper-config`), with its peak memory and the time of a forward pass without
   gradients at the same shape (what an evaluation batch costs);
3. inference bench on `--model`: examples/s at batch 32 and batch-1 latency, as trained and
   merged where the method merges (core.serving's timing, the one `bench-inference` uses);
4. a projection of `--paper-config` in GPU-hours, with and without a `tune:` stage (see
   `project_grid`).

MFU, the approximation: FLOPs of a step = 4·N·T + 2·N_train·T + 12·L·B·S²·H, with N the
model's non-embedding parameters (the method's own modules and the head included), N_train
those that train, T = B·S tokens, L layers of width H. The forward pass is 2·N·T; the backward
pass needs the activation gradients through every layer whatever trains (2·N·T; a PEFT method
has modules or trainable biases in every layer, so the backward pass cannot stop early) and
weight gradients only for what trains (2·N_train·T): FFT comes to the usual 6·N·T, a PEFT
method to about 4·N·T. Attention scores and values (2 matmuls of S × S × H per layer) count
3 × forward. Embedding lookups count nothing. The peak is the GPU's dense bf16 rate from
PEAK_TFLOPS by `torch.cuda.get_device_name()` (an unknown GPU: MFU omitted, and said so;
`--peak-tflops` sets it), on CPU the fp32 matmul rate measured here.

    python benchmarks/gpu_check.py [--device cuda|cpu] [--methods fft lora ...] [--out JSON]
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import json
import math
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("fft", "lora", "pfeiffer", "houlsby", "ia3", "bitfit", "prefix")
MODEL = ROOT / "models" / "multilingual-e5-small"
PAPER_CONFIG = ROOT / "configs" / "paper.yaml"
# Dense bf16 tensor-core TFLOPS (vendor data sheets), first match in the device name wins:
# A100 before A10, the PCIe H100 before the SXM one. V100 has no bf16: its fp16 rate.
PEAK_TFLOPS = (("H200", 989.0), ("H100 PCIe", 756.0), ("H100", 989.0), ("A100", 312.0),
               ("L40S", 362.0), ("A10", 125.0), ("RTX 4090", 165.0), ("V100", 125.0))
# SemEval-2023 Task 3 training rows of all six training languages (the paper's numbers,
# ../shared/DESIGN.md) and the tokens a row fills: articles average ~1,157 tokens, cut at
# max_length (512, head); paragraphs ~74 (dynamic padding: about their length).
PAPER_TRAIN_ROWS = {1: 1234, 2: 1238, 3: 10927}
ROW_TOKENS = {1: 1157, 2: 1157, 3: 74}
TRAIN_LANGS = 6   # en fr de it pl ru: en+translations is English plus 5 translations of it
# Assumptions the release does not state in DESIGN.md (each a flag): English's share of the
# training rows, the dev split's size relative to training (evaluated every epoch; at the end
# dev and test once, test taken as large as dev).
ENGLISH_SHARE = 0.35
DEV_FRACTION = 0.25
# The tune stage when the grid file has none: the demo's (configs/demo.yaml).
DEFAULT_TUNE = {"trials": 3, "seeds": [1], "sampler": "grid", "share": ["scenario"],
                "extend": 1, "space": {"learning_rate": {"range": "registry", "scale": 10}}}


# ---- device, precision, peak ------------------------------------------------------------
def device_and_precision(requested: str | None) -> tuple[str, str]:
    """core.devices' choice (the GPU in bf16, else CPU in fp32); a GPU without bf16 in fp16."""
    from peft_utils.core.devices import prepare_device

    device, precision = prepare_device(SimpleNamespace(device=requested or "auto",
                                                       precision="auto"))
    if device == "cuda" and precision == "fp32":
        precision = "fp16"
    return device, precision


def autocast(device: str, precision: str):
    import torch

    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


def sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def peak_flops(device: str, override_tflops: float | None) -> tuple[float | None, str]:
    """(FLOP/s, where the figure comes from)."""
    if override_tflops:
        return override_tflops * 1e12, "--peak-tflops"
    if device == "cuda":
        import torch

        name = torch.cuda.get_device_name()
        for key, tflops in PEAK_TFLOPS:
            if key.lower() in name.lower():
                return tflops * 1e12, f"{name}: {key} dense bf16 data sheet"
        return None, f"{name}: not in PEAK_TFLOPS, MFU omitted (set --peak-tflops)"
    from peft_utils.core.timing import matmul_flops

    return matmul_flops(), "CPU: fp32 matmul rate measured here (2048², best of 5)"



def reset_memory(device: str) -> None:
    """Free the last method's model, and start this one's peak memory from here."""
    import torch

    from peft_utils.core.devices import reset_peak_memory

    gc.collect()
    reset_peak_memory()
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()


# ---- models -----------------------------------------------------------------------------
def bench_config(method: str, model: str):
    """The run config of the training/inference bench (the offline default's settings)."""
    from peft_utils.classification.config import RunConfig

    return RunConfig(dataset="sib200", method=method, model=model, reduction_factor=16,
                     eval_batch_size=32)


def paper_grid(path: Path, tune: dict | None = None):
    """`path`'s grid; with `tune`, that tune stage in place of the file's."""
    from peft_utils.core.config import ConfigError, read_yaml
    from peft_utils.grid.spec import load_grid
    from peft_utils.grid.tune_spec import parse_tune

    grid = load_grid(path, base_dir=ROOT)
    if tune is None:
        return grid
    raw = read_yaml(path)
    axes = {**(raw.get("grid") or {}), **(raw.get("sweep") or {})}
    spec = parse_tune(tune, grid.study.keys, axes, set(raw.get("set") or {}),
                      lambda msg: ConfigError(f"{path}: {msg}"))
    return dataclasses.replace(grid, tune=spec)


def paper_config(grid, method: str, model: str):
    """The first preset's config for `method` as the grid builds it (its method_overrides),
    on `model`: the paper's settings for its methods, the preset's for the others."""
    preset = grid.cells[0].preset
    values = {**grid.cells[0].values, "method": method, "model": model}
    return grid.build(preset, values)


def tiny_paper_model(folder: Path) -> Path:
    """XLM-R-large's shipped config cut to 2 layers of width 64 (CPU mode): the same
    architecture, so every method applies as to the real one."""
    from importlib import resources

    raw = json.loads(resources.files("peft_utils").joinpath(
        "model_configs/xlm-roberta-large.json").read_text())
    raw.update(num_hidden_layers=2, hidden_size=64, intermediate_size=256,
               num_attention_heads=4, vocab_size=1000)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(raw, indent=2))
    return folder


def has_weights(model: str) -> bool:
    return Path(model).is_dir() and any(Path(model).glob("*.safetensors"))


def bench_model(requested: str | None) -> str:
    """--model; by default the offline model where its weights are here, else its shipped
    config with random weights (a GPU box that got no 449 MB of weights: step times do not
    depend on the weights' values)."""
    if requested:
        return requested
    return str(MODEL) if has_weights(str(MODEL)) else MODEL.name


def row_collator(model: str, config, pad: int):
    """The run's padding collator where the model has a tokenizer; else padding with the
    config's pad id (the rows are token ids already: only their padding needs one)."""
    import torch

    from peft_utils.classification.inference import collator
    from peft_utils.classification.models import load_tokenizer

    if Path(model, "tokenizer.json").is_file() or Path(model, "tokenizer_config.json").is_file():
        return collator(load_tokenizer(model), config)

    def collate(rows):
        longest = max(len(r["input_ids"]) for r in rows)
        def padded(row, key):
            return row[key] + [pad if key == "input_ids" else 0] * (longest - len(row[key]))
        return {key: torch.tensor([padded(r, key) for r in rows])
                for key in ("input_ids", "attention_mask")}
    return collate


def build(config, device: str, random_weights: bool):
    """core's model of `config` (classification.models.build_model: the method applied as a
    run applies it) on `device`; `random_weights`: from the config alone, on the device."""
    from peft_utils.classification.models import build_model
    from peft_utils.core.modeling import seed_everything

    seed_everything(0)
    built = build_model(config, meta=random_weights, device=device)
    return dataclasses.replace(built, model=built.model.to(device))


def step_flops(model, batch: int, seq: int) -> float:
    """The docstring's approximation of one training step's FLOPs."""
    from peft_utils.core.modeling import unique_parameters

    dense = [(name, p) for name, p in unique_parameters(model) if "embeddings" not in name]
    n_all = sum(p.numel() for _, p in dense)
    n_train = sum(p.numel() for _, p in dense if p.requires_grad)
    cfg = model.config
    tokens = batch * seq
    attention = 12 * cfg.num_hidden_layers * batch * seq ** 2 * cfg.hidden_size
    return 4 * n_all * tokens + 2 * n_train * tokens + attention


# ---- measurements -----------------------------------------------------------------------
def random_batch(model, batch: int, seq: int, device: str) -> dict:
    import torch

    generator = torch.Generator().manual_seed(0)
    vocab = model.config.vocab_size
    ids = torch.randint(5, vocab, (batch, seq), generator=generator)
    # The preset's problem type sets the loss: class ids, or one 0/1 column per label.
    labels = (torch.zeros(batch, model.config.num_labels)
              if model.config.problem_type == "multi_label_classification"
              else torch.zeros(batch, dtype=torch.long))
    return {"input_ids": ids.to(device), "attention_mask": torch.ones_like(ids).to(device),
            "labels": labels.to(device)}


def time_steps(model, inputs: dict, device: str, precision: str, steps: int,
               warmup: int) -> list[float]:
    """Seconds of each of `steps` optimizer steps (forward, backward, fused AdamW as the runs'
    Trainer) after `warmup` untimed ones (allocations, kernel choice)."""
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-5, fused=True)
    model.train()
    times = []
    for i in range(warmup + steps):
        sync(device)
        start = time.perf_counter()
        with autocast(device, precision):
            loss = model(**inputs).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        sync(device)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return times


def time_forward(model, inputs: dict, device: str, precision: str, repeats: int) -> float:
    """Median seconds of a forward pass without gradients (an evaluation batch)."""
    import torch

    model.eval()
    times = []
    with torch.inference_mode():
        for i in range(repeats + 1):
            sync(device)
            start = time.perf_counter()
            with autocast(device, precision):
                model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
            sync(device)
            if i:
                times.append(time.perf_counter() - start)
    return statistics.median(times)


def train_bench(method: str, ctx) -> dict:
    """Step time and MFU of `method` on the bench model at ctx.shape."""
    from peft_utils.core.devices import peak_memory

    reset_memory(ctx.device)
    built = build(bench_config(method, ctx.model), ctx.device, not has_weights(ctx.model))
    batch, seq = ctx.shape
    times = time_steps(built.model, random_batch(built.model, batch, seq, ctx.device),
                       ctx.device, ctx.precision, ctx.steps, ctx.warmup)
    step_s = statistics.median(times)
    flops = step_flops(built.model, batch, seq)
    memory, kind = peak_memory(ctx.device)
    return {"step_s": step_s, "steps_per_s": 1 / step_s, "tflops": flops / step_s / 1e12,
            "mfu": flops / step_s / ctx.peak if ctx.peak else None,
            "trainable": built.report["trainable"], "peak_memory_mib": memory,
            "memory_kind": kind, "batch": batch, "seq": seq}


def paper_step(method: str, ctx) -> dict:
    """One paper-shaped training step of `method` (random weights) and a forward pass."""
    from peft_utils.core.devices import peak_memory

    reset_memory(ctx.device)
    config = paper_config(ctx.grid, method, ctx.paper_model)
    built = build(config, ctx.device, random_weights=True)
    batch, seq = ctx.paper_shape
    inputs = random_batch(built.model, batch, seq, ctx.device)
    times = time_steps(built.model, inputs, ctx.device, ctx.precision, ctx.paper_steps,
                       ctx.warmup)
    memory, kind = peak_memory(ctx.device)
    return {"step_s": statistics.median(times), "peak_memory_mib": memory, "memory_kind": kind,
            "eval_forward_s": time_forward(built.model, inputs, ctx.device, ctx.precision,
                                           ctx.paper_steps),
            "trainable": built.report["trainable"], "total": built.report["total"],
            "batch": batch, "seq": seq, "layers": built.model.config.num_hidden_layers,
            "hidden": built.model.config.hidden_size}


def inference_bench(method: str, ctx) -> dict:
    """Examples/s at batch 32 and batch-1 latency of `method` on the bench model, as built
    and merged where it merges: core.serving's timing, with the run's collator and logits
    pass (classification.training.serving_subject's Subject, built here because that module
    imports scikit-learn and SciPy, which the GPU box's wheel bundle leaves out)."""
    from peft_utils.classification.inference import infer_logits
    from peft_utils.classification.models import ADAPTER_NAME
    from peft_utils.core import methods
    from peft_utils.core.serving import Subject, merge_status

    config = bench_config(method, ctx.model)
    built = build(config, ctx.device, not has_weights(ctx.model))
    collate = row_collator(ctx.model, config, built.model.config.pad_token_id)
    subject = Subject(built.model, methods.get(method), ADAPTER_NAME,
                      lambda m, part, size: infer_logits(m, part, size, collate, ctx.precision),
                      lambda a, b: float(abs(a - b).max()),
                      token_rows(built.model.config.vocab_size, ctx.shape[1]),
                      config.eval_batch_size)
    out = {"merge": merge_status(subject.entry), "batch_size": config.eval_batch_size,
           **subject.timed(built.model), "merged": None}
    twin = subject.merged()
    if twin is not None:
        out["merged"] = subject.timed(twin)
    return out


def token_rows(vocab: int, longest: int, n: int = 128) -> list[dict]:
    """`n` tokenised rows of random ids, lengths spread from longest/4 to longest."""
    import random

    rng = random.Random(0)
    rows = []
    for k in range(n):
        length = max(2, longest // 4 + (longest - longest // 4) * k // max(n - 1, 1))
        ids = [rng.randrange(5, vocab) for _ in range(length)]
        rows.append({"input_ids": ids, "attention_mask": [1] * length})
    return rows


# ---- the projection ---------------------------------------------------------------------
def train_rows(config, english_share: float) -> int:
    """Training rows of a SemEval cell: the release's (all six languages), English's share of
    them, or English with its five translations."""
    rows = PAPER_TRAIN_ROWS[config.subtask]
    english = round(rows * english_share)
    by_scenario = {"multilingual": rows, "en": english, "en+translations": english * TRAIN_LANGS}
    return by_scenario[config.scenario]


def cell_seconds(config, step: dict, english_share: float, dev_fraction: float,
                 final: bool) -> float:
    """Seconds of one run of `config`: epochs × steps per epoch × the measured paper-shaped
    step scaled to the cell's batch (preset) and tokens per row (step time taken as linear in
    tokens), and an evaluation pass over dev each epoch (a final run then evaluates dev and
    test once more; trials never predict test)."""
    tokens = min(ROW_TOKENS[config.subtask], config.max_length)
    per_token = step["step_s"] / (step["batch"] * step["seq"])
    eval_per_token = step["eval_forward_s"] / (step["batch"] * step["seq"])
    rows = train_rows(config, english_share)
    steps = math.ceil(rows / config.batch_size)
    train = config.num_epochs * steps * config.batch_size * tokens * per_token
    dev_rows = dev_fraction * PAPER_TRAIN_ROWS[config.subtask]
    evaluate = (config.num_epochs + (2 if final else 0)) * dev_rows * tokens * eval_per_token
    return train + evaluate


def project_grid(grid, steps: dict[str, dict], english_share: float,
                 dev_fraction: float) -> dict:
    """GPU-hours of every run of `grid` (trials and final cells) by method; None for a method
    whose paper-shaped step was not measured."""
    from peft_utils.grid.tuning import planned_trials

    runs = [(cell.config, True) for cell in grid.cells]
    if grid.tune:
        runs += [(cell.config, False) for t in planned_trials(grid) for cell in t.runs]
    hours: dict[str, float | None] = {}
    counts: dict[str, int] = {}
    for config, final in runs:
        counts[config.method] = counts.get(config.method, 0) + 1
        step = steps.get(config.method)
        if step is None or hours.get(config.method, 0.0) is None:
            hours[config.method] = None
            continue
        hours[config.method] = hours.get(config.method, 0.0) + cell_seconds(
            config, step, english_share, dev_fraction, final) / 3600
    total = None if None in hours.values() else sum(hours.values())
    return {"runs": counts, "gpu_hours": hours, "total_gpu_hours": total}


def projection(ctx, steps: dict[str, dict]) -> dict:
    """The grid without and with a tune stage (the file's, else DEFAULT_TUNE)."""
    plain = paper_grid(ctx.paper_config)
    tuned = plain if plain.tune else paper_grid(ctx.paper_config, DEFAULT_TUNE)
    untuned = dataclasses.replace(plain, tune=None)
    return {"assumptions": {
                "train_rows": PAPER_TRAIN_ROWS, "row_tokens": ROW_TOKENS,
                "english_share": ctx.english_share, "dev_fraction": ctx.dev_fraction,
                "tune": "the grid file's" if plain.tune else f"DEFAULT_TUNE {DEFAULT_TUNE}",
                "tune_extend": "the edge rule's extra trials (extend) are decided at run time "
                               "and not counted",
                "step": "measured paper-shaped step, scaled linearly in batch × tokens"},
            "untuned": project_grid(untuned, steps, ctx.english_share, ctx.dev_fraction),
            "tuned": project_grid(tuned, steps, ctx.english_share, ctx.dev_fraction)}


# ---- the run ----------------------------------------------------------------------------
class Budget:
    """Stops adding measurements when the next one (estimated as the last of its kind took)
    would overrun."""

    def __init__(self, seconds: float):
        self.seconds, self.start, self.last = seconds, time.perf_counter(), {}

    def allows(self, kind: str) -> bool:
        elapsed = time.perf_counter() - self.start
        return elapsed + self.last.get(kind, 0.0) <= 0.95 * self.seconds

    def measure(self, kind: str, fn, *args):
        start = time.perf_counter()
        out = fn(*args)
        self.last[kind] = time.perf_counter() - start
        return out


def run_phase(kind: str, fn, methods: list[str], ctx, budget: Budget, skipped: list) -> dict:
    out = {}
    for method in methods:
        if not budget.allows(kind):
            skipped.append(f"{kind} {method}: budget")
            continue
        try:
            out[method] = budget.measure(kind, fn, method, ctx)
        except (MemoryError, out_of_memory()) as err:   # FFT at 16 × 512 on a small GPU
            skipped.append(f"{kind} {method}: out of memory ({str(err).splitlines()[0][:80]})")
            continue
        print(f"{kind:9s} {method:9s} done at {time.perf_counter() - budget.start:6.1f} s",
              file=sys.stderr, flush=True)
    return out


def out_of_memory() -> type:
    import torch

    return torch.cuda.OutOfMemoryError   # torch.OutOfMemoryError from torch 2.5 on; the same class


def add_ratios(results: dict, key: str = "step_s") -> None:
    fft = results.get("fft")
    for row in results.values():
        row["ratio_to_fft"] = row[key] / fft[key] if fft else None


def versions() -> dict:
    import adapters
    import peft
    import torch
    import transformers

    return {"python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "peft": peft.__version__,
            "adapters": adapters.__version__, "cuda": torch.version.cuda}


def parse_args(argv: list[str] | None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("cuda", "cpu"), default=None,
                        help="default: cuda where available")
    parser.add_argument("--methods", nargs="+", default=list(METHODS),
                        help="registry methods (fft first: the ratios' reference)")
    parser.add_argument("--model", default=None,
                        help="training/inference bench model: a folder (weights loaded where it "
                             "has safetensors, else built from its config.json) or a shipped "
                             "config's name; default: models/multilingual-e5-small, or its "
                             "shipped config where the weights are not here")
    parser.add_argument("--paper-config", default=str(PAPER_CONFIG), type=Path)
    parser.add_argument("--paper-model", default=None,
                        help="default: xlm-roberta-large from its shipped config (GPU), a "
                             "2-layer cut of it (CPU)")
    parser.add_argument("--shape", default=None, help="bench BATCHxSEQ (GPU 32x128, CPU 8x32)")
    parser.add_argument("--paper-shape", default=None,
                        help="paper step BATCHxSEQ (GPU 16x512, CPU 4x64)")
    parser.add_argument("--steps", type=int, default=None,
                        help="timed steps (GPU 10, CPU 5; paper-shaped: half, at least 3)")
    parser.add_argument("--budget-s", type=float, default=None, help="GPU 300, CPU 1800")
    parser.add_argument("--peak-tflops", type=float, default=None)
    parser.add_argument("--english-share", type=float, default=ENGLISH_SHARE)
    parser.add_argument("--dev-fraction", type=float, default=DEV_FRACTION)
    parser.add_argument("--out", type=Path,
                        default=ROOT / "benchmarks" / "results" / "gpu_check.json")
    return parser.parse_args(argv)


def context(args, workdir: Path):
    """The run's settings: the argument where given, else the device's default."""
    device, precision = device_and_precision(args.device)
    gpu = device == "cuda"

    def shape(text, default):
        batch, seq = (text or default).lower().split("x")
        return int(batch), int(seq)

    steps = args.steps or (10 if gpu else 5)
    paper_model = args.paper_model or ("xlm-roberta-large" if gpu else
                                       str(tiny_paper_model(workdir / "tiny-xlmr-large")))
    peak, peak_source = peak_flops(device, args.peak_tflops)
    return SimpleNamespace(
        device=device, precision=precision, model=bench_model(args.model), methods=args.methods,
        shape=shape(args.shape, "32x128" if gpu else "8x32"),
        paper_shape=shape(args.paper_shape, "16x512" if gpu else "4x64"),
        steps=steps, paper_steps=max(3, steps // 2),
        warmup=3 if gpu else 1, paper_config=args.paper_config, paper_model=paper_model,
        grid=paper_grid(args.paper_config), peak=peak, peak_source=peak_source,
        budget=args.budget_s or (300.0 if gpu else 1800.0),
        english_share=args.english_share, dev_fraction=args.dev_fraction)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import transformers

    transformers.logging.set_verbosity_error()   # a fresh head's warning per method, 21 times
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        ctx = context(args, Path(tmp))
        result = measure_all(ctx)
    result["command"] = " ".join(["python", "benchmarks/gpu_check.py",
                                  *(sys.argv[1:] if argv is None else argv)])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(markdown(result))
    print(f"written: {args.out}", file=sys.stderr)
    return 0


def measure_all(ctx) -> dict:
    """The three benches within the budget, and the projection from the paper-shaped steps."""
    import torch

    budget, skipped = Budget(ctx.budget), []
    # The paper grid's own methods first: the projection needs their paper-shaped steps.
    in_grid = {c.config.method for c in ctx.grid.cells}
    paper_order = sorted(ctx.methods, key=lambda m: m not in in_grid)
    train = run_phase("train", train_bench, ctx.methods, ctx, budget, skipped)
    paper = run_phase("paper", paper_step, paper_order, ctx, budget, skipped)
    infer = run_phase("inference", inference_bench, ctx.methods, ctx, budget, skipped)
    add_ratios(train)
    add_ratios(paper)
    gpu = ctx.device == "cuda"
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "device": ctx.device,
        "device_name": torch.cuda.get_device_name() if gpu else platform.processor() or "CPU",
        "threads": torch.get_num_threads(), "precision": ctx.precision,
        "peak_flops": ctx.peak, "peak_source": ctx.peak_source, "versions": versions(),
        "model": ctx.model, "paper_model": ctx.paper_model, "paper_config": str(ctx.paper_config),
        "shape": list(ctx.shape), "paper_shape": list(ctx.paper_shape),
        "train": train, "paper_step": paper, "inference": infer,
        "projection": projection(ctx, paper), "skipped": skipped,
        "wall_s": time.perf_counter() - budget.start, "budget_s": ctx.budget}


# ---- the tables -------------------------------------------------------------------------
def _num(value, fmt: str, scale: float = 1.0) -> str:
    return "–" if value is None else format(value * scale, fmt)


def markdown(result: dict) -> str:
    lines = [f"{result['device_name']} ({result['device']}, {result['precision']}), "
             f"{result['date']}; MFU against {result['peak_source']}", ""]
    lines += training_table(result) + [""] + inference_table(result) + [""]
    lines += projection_table(result)
    if result["skipped"]:
        lines += ["", "Not measured: " + ", ".join(result["skipped"])]
    lines += ["", f"wall time {result['wall_s']:.0f} s of a {result['budget_s']:.0f} s budget"]
    return "\n".join(lines) + "\n"


def training_table(result: dict) -> list[str]:
    (b, s), (pb, ps) = result["shape"], result["paper_shape"]
    lines = [f"| method | train step ms ({b}×{s}) | ×FFT | MFU | paper step ms ({pb}×{ps}) | ×FFT "
             "| paper peak MiB | eval fwd ms |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for m in result_methods(result):
        t, p = result["train"].get(m, {}), result["paper_step"].get(m, {})
        mfu = _num(t.get("mfu"), ".2f", 100) + ("%" if t.get("mfu") is not None else "")
        lines.append(f"| {m} | {_num(t.get('step_s'), '.1f', 1000)} | "
                     f"{_num(t.get('ratio_to_fft'), '.2f')} | {mfu} | "
                     f"{_num(p.get('step_s'), '.1f', 1000)} | "
                     f"{_num(p.get('ratio_to_fft'), '.2f')} | "
                     f"{_num(p.get('peak_memory_mib'), '.0f')} | "
                     f"{_num(p.get('eval_forward_s'), '.1f', 1000)} |")
    return lines


def inference_table(result: dict) -> list[str]:
    lines = ["| method | serving | ex/s b32 | latency b1 ms | merged ex/s b32 "
             "| merged latency b1 ms |",
             "| --- | --- | ---: | ---: | ---: | ---: |"]
    for m, i in result["inference"].items():
        merged = i.get("merged") or {}
        lines.append(f"| {m} | {i['merge']} | {_num(i['examples_per_s'], '.1f')} | "
                     f"{_num(i['latency_ms_median'], '.2f')} | "
                     f"{_num(merged.get('examples_per_s'), '.1f')} | "
                     f"{_num(merged.get('latency_ms_median'), '.2f')} |")
    return lines


def projection_table(result: dict) -> list[str]:
    proj = result["projection"]
    methods = list(proj["untuned"]["gpu_hours"])
    lines = [f"{Path(result['paper_config']).name} projected in GPU-hours of this device "
             "(from the paper-shaped steps):", "",
             "| stage | runs | " + " | ".join(methods) + " | total |",
             "| --- | ---: | " + " | ".join("---:" for _ in methods) + " | ---: |"]
    for stage in ("untuned", "tuned"):
        row = proj[stage]
        lines.append(f"| {stage} | {sum(row['runs'].values())} | "
                     + " | ".join(_num(row["gpu_hours"][m], ".2f") for m in methods)
                     + f" | {_num(row['total_gpu_hours'], '.2f')} |")
    return lines


def result_methods(result: dict) -> list[str]:
    seen = []
    for part in ("train", "paper_step", "inference"):
        seen += [m for m in result[part] if m not in seen]
    return seen


if __name__ == "__main__":
    sys.exit(main())
