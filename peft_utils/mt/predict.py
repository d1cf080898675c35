"""`python -m peft_utils predict SOURCE --input PATH|- [--out PATH]` (core.predict) of an MT
run: translations of new texts, made as the run made its own (its language pair, the source
prefix its model family needs, its decoding and max_source_length).

SOURCE is a finished MT run's folder or a `merged` or `adapter` export of one (an adapter
export loads its base model from where its metadata says). The output is the input's rows,
every column kept, with `translation` added (data.table_io: the same tables as
classification's `predict`).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from peft_utils.core import methods
from peft_utils.core.config import ConfigError
from peft_utils.core.export import METADATA, finished_run, load_adapter, read_metadata
from peft_utils.data.table_io import encode_table, output_kind, read_input, write_table_out


@dataclass
class Source:
    """A trained translation model and how its run translated."""
    model: Any
    tokenizer: Any
    scheme: Any              # mt.tokenize.Scheme
    settings: dict[str, Any]  # src_lang, tgt_lang, num_beams, max_new_tokens, ... (export's)

    def translate(self, texts: list[str]) -> list[str]:
        from peft_utils.mt.tokenize import translate_texts

        s = self.settings
        return translate_texts(self.model, self.tokenizer, self.scheme, texts, s["src_lang"],
                               s["tgt_lang"], s["eval_batch_size"], s["num_beams"],
                               s["max_source_length"], s["max_new_tokens"])


def load_source(source: str | Path) -> Source:
    """The model of a run folder, or of a merged or adapter export of one."""
    from peft_utils.mt import export

    folder = Path(source)
    meta = read_metadata(folder)
    if meta is None:
        run = export.load(folder, finished_run(folder))
        return Source(run.model, run.tokenizer, run.scheme, _settings(export.metadata(run, "run")))
    if meta["format"] not in export.WRITERS:
        raise ConfigError(f"{folder}: a {meta['format']!r} export; give the run folder or "
                          "its merged or adapter export")
    from transformers import AutoTokenizer

    from peft_utils.mt.tokenize import Scheme

    settings = _settings(meta)
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=False)
    return Source(_model(folder, meta).eval(), tokenizer, Scheme(settings["scheme"]), settings)


def _settings(meta: dict[str, Any]) -> dict[str, Any]:
    return {**meta["settings"], "src_lang": meta["src_lang"], "tgt_lang": meta["tgt_lang"]}


def _model(folder: Path, meta: dict[str, Any]):
    from transformers import AutoModelForSeq2SeqLM

    from peft_utils.core.modeling import load_pretrained

    if meta["format"] == "merged":
        return load_pretrained(AutoModelForSeq2SeqLM, str(folder))
    entry = methods.get(meta["method"], "seq2seq")
    base_model = meta["settings"]["base_model"]
    try:
        base = load_pretrained(AutoModelForSeq2SeqLM, base_model,
                               **({"attn_implementation": "eager"} if entry.needs_eager else {}))
    except (OSError, ValueError) as err:   # not found; not a folder nor a hub name
        raise ConfigError(f"{folder}: its base model {base_model} does not load "
                          f"({str(err).splitlines()[0]}); put it where settings.base_model in "
                          f"{METADATA} says, or edit that path") from None
    return load_adapter(base, entry, folder)


def predict_command(args) -> int:
    if Path(args.input).is_dir():
        raise ConfigError(f"--input {args.input} is a folder: an MT run translates a table or "
                          "lines (`python -m peft_utils translate` translates a SemEval-layout "
                          "folder)")
    kind = output_kind(args.out)   # before any work: a wrong suffix fails at once
    frame, texts = read_input(args.input, args.text_column)
    translations = load_source(args.source).translate(texts)
    write_table_out(encode_table(frame.assign(translation=translations), kind), args.out,
                    f"{len(texts)} translations")
    return 0
