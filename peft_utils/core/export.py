"""`python -m peft_utils export RUN_DIR OUT [--format merged|adapter|onnx]`: a finished run's
model in a form that other code loads, what every study shares.

- `merged`: the method folded into the base weights (core.serving.merged_copy), saved as a
  plain transformers model folder (no code of this project, no remote code);
- `adapter`: the method's own weights in its library's format (peft's `save_pretrained`,
  the adapters library's `save_adapter` with the head), loaded onto the base model;
- `onnx`: the merged model as an ONNX graph, checked against PyTorch when written.

Each folder holds `peft_utils_export.json` (METADATA): what a loader cannot know (the run,
its settings and scores, the checks made when writing). The study writes the files
(`Study.export`); this module holds the format rules, the staging of the folder (written
beside OUT and renamed into place: OUT is the old folder or the new one, never a part), the
weight copy into a plain model and the ONNX writing and check. A method that has no form in
a format is refused with the reason (a ConfigError: exit status 2).
"""
from __future__ import annotations

import contextlib
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator

from peft_utils.core.checkpoints import FINAL
from peft_utils.core.config import ConfigError
from peft_utils.core.methods import Method
from peft_utils.core.modeling import QUIET_WRITER, stamp_quiet_writer
from peft_utils.core.runs import RECORD, atomic_write_text, json_default, read_record
from peft_utils.core.serving import merge_status

FORMATS = ("merged", "adapter", "onnx")
METADATA = "peft_utils_export.json"
ONNX_FILE = "model.onnx"
# fp32 on CPU: the graph computes what PyTorch does up to operator rounding (measured max
# abs logit diffs are ~1e-6 on the test models); a larger gap is a broken export.
ONNX_TOLERANCE = 1e-4


# ---- what can be exported how ---------------------------------------------------------------
def format_problem(entry: Method, fmt: str) -> str | None:
    """Why `entry`'s runs have no `fmt` export (None: they have one), in one line."""
    if fmt not in FORMATS:
        return f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}"
    if fmt in ("merged", "onnx") and merge_status(entry) == "cannot merge":
        return (f"{entry.name} cannot be merged into the base weights: it adds computation "
                "to every forward pass; export it with --format adapter")
    if fmt == "adapter" and not entry.backend.has_adapter:
        return (f"{entry.name} changes the base model's own weights, so there is no adapter "
                "to save apart from them; export it with --format merged")
    if fmt == "adapter" and entry.changes_base:
        return (f"{entry.name} rewrites the base weights when it starts, so its adapter does "
                "not load onto the published base model; export it with --format merged")
    return None


def best_format(entry: Method) -> str | None:
    """The format to export `entry`'s runs in: `merged` (a plain model, no adapter library to
    load) where the method merges or changes the base weights itself (the reference, FFT,
    among them), else `adapter`; None when neither fits."""
    return next((fmt for fmt in ("merged", "adapter") if format_problem(entry, fmt) is None),
                None)


def finished_run(run_dir: str | Path) -> dict[str, Any]:
    """The record of the complete run in `run_dir`, its weights kept; a ConfigError saying
    what is missing otherwise."""
    folder = Path(run_dir)
    if not (folder / RECORD).is_file():
        raise ConfigError(f"{folder}: no {RECORD}; give a run folder (results/<run_id>)")
    record = read_record(folder)
    if record.get("status") != "complete":
        raise ConfigError(f"{folder}: the run is {record.get('status')!r}, not complete; "
                          "train it to the end first")
    if not (folder / FINAL).is_file():
        raise ConfigError(f"{folder}: no {FINAL} (a tuning trial keeps no weights); export "
                          "a final run")
    return record


# ---- the export folder ----------------------------------------------------------------------
@contextlib.contextmanager
def staged(out: str | Path, force: bool = False) -> Iterator[Path]:
    """A fresh folder beside `out` to write the export into, renamed to `out` when the block
    ends without error (and removed when it fails). An existing `out` is replaced only with
    `force`, and only once the new folder is complete."""
    out = Path(out)
    if out.exists() and not force and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"{out} exists; choose another folder or pass --force to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    try:
        yield tmp
        old = None
        if out.exists():
            old = out.parent / f"{tmp.name}.old"
            out.rename(old)
        tmp.rename(out)
        if old is not None:
            shutil.rmtree(old) if old.is_dir() else old.unlink()
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def finish_export(folder: str | Path, meta: dict[str, Any]) -> None:
    """The export's last files: its config.json stamped where the transformers that wrote it
    would make AutoTokenizer warn falsely about the folder's tokenizer
    (core.modeling.stamp_quiet_writer; `written_with` in the metadata keeps the truth), then
    the metadata."""
    import transformers

    config = Path(folder) / "config.json"
    meta["written_with"] = {"transformers": transformers.__version__}
    if config.is_file() and stamp_quiet_writer(config):
        meta["written_with"]["config_json_says"] = QUIET_WRITER
    atomic_write_text(Path(folder) / METADATA,
                      json.dumps(meta, indent=2, default=json_default) + "\n")


def read_metadata(folder: str | Path) -> dict[str, Any] | None:
    """An export folder's metadata; None when `folder` is not an export."""
    path = Path(folder) / METADATA
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


# ---- merged weights in a plain model ---------------------------------------------------------
def copy_weights(source, target) -> None:
    """Every parameter and buffer of `target` set from `source`'s of the same name: a merged
    model's weights into a freshly built plain model, leaving out what the method's library
    added (the adapters library keeps its modules after merging). A target weight that
    `source` lacks is an error, not a silently random weight."""
    import torch

    weights = source.state_dict()
    state = target.state_dict()
    missing = sorted(set(state) - set(weights))
    if missing:
        raise ValueError(f"the merged model lacks {len(missing)} weights of the plain model, "
                         f"e.g. {missing[:3]}")
    with torch.no_grad():
        target.load_state_dict({name: weights[name] for name in state}, strict=True)


def save_adapter(model, entry: Method, adapter_name: str, folder: Path,
                 with_head: bool = True) -> None:
    """The method's weights and the task head in its library's own format, by its backend
    (core.backends): peft's `save_pretrained` (the head in `modules_to_save`), the adapters
    library's `save_adapter` with the head (a static transformers head is saved beside it).
    `with_head=False`: a model whose head is the base model's own (a seq2seq LM head) has
    none to save."""
    entry.backend.save(model, entry, adapter_name, folder, with_head)


def load_adapter(base, entry: Method, folder: str | Path):
    """`save_adapter`'s folder loaded onto `base` (the base model with the run's labels) by
    the method's library: peft's `PeftModel.from_pretrained`, the adapters library's
    `load_adapter` (safetensors, the head with it, set active). The model to predict with."""
    return entry.backend.load(base, entry, folder)


# ---- ONNX ---------------------------------------------------------------------------------
def write_onnx(module, inputs: dict[str, Any], path: Path, output: str,
               dynamic: dict[str, dict[int, str]]) -> None:
    """`module(**inputs)` as an ONNX graph at `path`, one output named `output`; `dynamic`:
    the axes that vary by input (batch, sequence). The TorchScript exporter traces the forward
    pass, forward hooks included (so a head that reads a pooled state keeps reading it)."""
    import warnings

    import torch

    module.eval()
    with torch.no_grad(), warnings.catch_warnings():
        # Python values turned into constants while tracing: shapes stay dynamic through
        # dynamic_axes, and the export is checked against PyTorch on real rows afterwards.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(module, tuple(inputs.values()), str(path), dynamo=False,
                          input_names=list(inputs), output_names=[output],
                          dynamic_axes={**dynamic, output: {0: "batch"}}, opset_version=17)


def onnx_session(path: str | Path, threads: int | None = None):
    """A CPU session of the graph at `path`; `threads`: its intra-op threads (default: ONNX
    Runtime's, one per physical core), e.g. as many as PyTorch uses when the two are timed."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


# ---- CLI ------------------------------------------------------------------------------------
def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "export", help="a finished run's model for use outside this project",
        description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", help="a complete run's folder (results/<run_id>)")
    parser.add_argument("out", help="the export folder to write")
    parser.add_argument("--format", choices=FORMATS, default="merged")
    parser.add_argument("--force", action="store_true", help="replace an existing OUT")
    parser.set_defaults(func=_export_command)


def _export_command(args) -> int:
    from peft_utils.core.study import study_of_config

    record = finished_run(args.run_dir)
    kind = study_of_config(record["run_info"])
    if kind.export is None:
        raise ConfigError(f"{args.run_dir}: {kind.name} runs cannot be exported yet")
    try:
        meta = kind.export(Path(args.run_dir), Path(args.out), args.format, args.force)
    except ConfigError as err:   # named by the run where the study's message is not
        if str(err).startswith(str(args.run_dir)):
            raise
        raise ConfigError(f"{args.run_dir}: {err}") from None
    print(f"exported {meta['run_id']} ({meta['method']}, {args.format}) to {args.out}")
    for note in meta.get("notes", []):
        print(f"note: {note}", file=sys.stderr)
    return 0
