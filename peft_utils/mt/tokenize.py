"""Telling each model family the language pair, encoding pairs, and generating. What each
family needs (its codes, its prefix, how generation is forced into the target language) is
its row in `mt.families`; a Scheme is that row by name, as records keep it."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from peft_utils.mt.families import FAMILIES, Family, family_of
from peft_utils.mt.langs import LANGS


@dataclass(frozen=True)
class Scheme:
    name: str   # a family of mt.families.FAMILIES

    @property
    def family(self) -> Family:
        return FAMILIES[self.name]

    def code(self, iso: str) -> str:
        code = self.family.code(iso)
        if code is None:
            raise ValueError(f"{LANGS[iso].name} ({iso}) is not a language of this "
                             f"{self.name} model; pick another model or language")
        return code

    @property
    def takes_codes(self) -> bool:
        """The tokenizer takes the pair as language codes (`src_lang`, `tgt_lang`)."""
        return self.family.takes_codes

    def prepare(self, tokenizer, src: str, tgt: str) -> None:
        if self.takes_codes:
            tokenizer.src_lang, tokenizer.tgt_lang = self.code(src), self.code(tgt)

    def prefix(self, src: str, tgt: str) -> str:
        """The text put before every source (a pipeline's `prefix`); empty for the families
        that take language codes."""
        return self.family.prefix.format(src=src, tgt=tgt, src_name=LANGS[src].name,
                                         tgt_name=LANGS[tgt].name)

    def sources(self, texts: list[str], src: str, tgt: str) -> list[str]:
        prefix = self.prefix(src, tgt)
        return [prefix + t for t in texts]

    def generate_kwargs(self, tokenizer, tgt: str) -> dict[str, Any]:
        family = self.family
        if family.forced_bos == "lang_id":
            return {"forced_bos_token_id": tokenizer.get_lang_id(self.code(tgt))}
        if family.forced_bos == "token":
            return {"forced_bos_token_id": tokenizer.convert_tokens_to_ids(self.code(tgt))}
        if family.suppress_special:
            return {"suppress_tokens": [i for i in tokenizer.all_special_ids
                                        if i != tokenizer.eos_token_id]}
        return {}


def scheme_for(tokenizer, model_type: str) -> Scheme:
    return Scheme(family_of(tokenizer, model_type).name)


def load_tokenizer(name: str):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(name, trust_remote_code=False)
    except (ImportError, ValueError) as err:
        # A SentencePiece-only tokenizer (mT5 on the hub) becomes a fast one through protobuf;
        # without it the slow tokenizer gives the same ids.
        if "protobuf" not in str(err):
            raise
        return AutoTokenizer.from_pretrained(name, use_fast=False, trust_remote_code=False)


def encode_pairs(tokenizer, scheme: Scheme, sources: list[str], targets: list[str], src: str,
                 tgt: str, max_source: int, max_target: int) -> list[dict[str, list[int]]]:
    scheme.prepare(tokenizer, src, tgt)
    enc = tokenizer(scheme.sources(sources, src, tgt), max_length=max_source, truncation=True)
    labels = tokenizer(text_target=targets, max_length=max_target, truncation=True)["input_ids"]
    return [{"input_ids": ids, "attention_mask": mask, "labels": lab}
            for ids, mask, lab in zip(enc["input_ids"], enc["attention_mask"], labels)]


def autocast(device, precision: str):
    import torch

    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def configure_generation(model, tokenizer, scheme: Scheme, tgt: str, num_beams: int,
                         max_new_tokens: int) -> None:
    """Set the model's generation config to what `translate_texts` passes (greedy or beam
    search, the target language forced or tagged), so that the trainer's dev translations
    during training are generated the same way."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model   # peft
    base.generation_config.update(num_beams=num_beams, max_new_tokens=max_new_tokens,
                                  do_sample=False, **scheme.generate_kwargs(tokenizer, tgt))


def translate_texts(model, tokenizer, scheme: Scheme, texts: list[str], src: str, tgt: str,
                    batch_size: int = 32, num_beams: int = 1, max_source: int = 128,
                    max_new_tokens: int = 128, precision: str = "fp32",
                    min_new_tokens: int | None = None) -> list[str]:
    """Translations of `texts` in their order; batches sorted by length (less padding)."""
    import torch

    if not texts:
        return []
    device = next(model.parameters()).device
    scheme.prepare(tokenizer, src, tgt)
    sources = scheme.sources(texts, src, tgt)
    order = np.argsort([-len(s) for s in sources], kind="stable")
    out: list[str] = [""] * len(texts)
    extra = scheme.generate_kwargs(tokenizer, tgt)
    if min_new_tokens and "forced_bos_token_id" in extra:
        min_new_tokens += 1   # the forced language code is not a word of the translation
    model.eval()
    with torch.inference_mode(), autocast(device, precision):
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            batch = tokenizer([sources[i] for i in idx], max_length=max_source,
                              truncation=True, padding=True, return_tensors="pt")
            generated = model.generate(input_ids=batch["input_ids"].to(device),
                                       attention_mask=batch["attention_mask"].to(device),
                                       num_beams=num_beams, max_new_tokens=max_new_tokens,
                                       min_new_tokens=min_new_tokens, do_sample=False,
                                       **extra)
            decoded = tokenizer.batch_decode(generated, skip_special_tokens=True)
            for i, text in zip(idx, decoded):
                out[i] = text.strip()
    return out
