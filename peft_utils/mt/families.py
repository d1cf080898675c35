"""How each model family is told the language pair: one row per family (FAMILIES), found from
the tokenizer's class and the model's type. A new family (its codes, its prefix, how its
generation is forced into the target language) is one row here; `mt.tokenize` reads the row,
`mt.langs` accepts its codes as spellings of the ISO codes it stands for.

- mbart50 / nllb / m2m100: the tokenizer's `src_lang`/`tgt_lang` put language codes around
  source and target; generation forces the target code as the first token.
- t5: a text prefix, "translate English to German: ..." (mT5 was pre-trained without it,
  so fine-tuning teaches it).
- tags: a `<2xx>` target tag before the source (the tiny test models).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

# ISO 639-1 -> the family's own code, for the study's languages (mt.langs.LANGS); a language
# missing here is not one the family's model knows.
MBART50 = {"en": "en_XX", "de": "de_DE", "fr": "fr_XX", "es": "es_XX", "it": "it_IT",
           "ka": "ka_GE", "ja": "ja_XX", "zh": "zh_CN", "hi": "hi_IN", "pl": "pl_PL",
           "ru": "ru_RU", "sw": "sw_KE"}
NLLB = {"en": "eng_Latn", "de": "deu_Latn", "fr": "fra_Latn", "es": "spa_Latn",
        "it": "ita_Latn", "ka": "kat_Geor", "ja": "jpn_Jpan", "zh": "zho_Hans",
        "hi": "hin_Deva", "pl": "pol_Latn", "ru": "rus_Cyrl", "el": "ell_Grek",
        "sw": "swh_Latn"}
ISO = "iso"   # `codes` of a family whose tokenizer takes the ISO code itself (M2M100)


@dataclass(frozen=True)
class Family:
    name: str
    tokenizers: tuple[str, ...] = ()     # tokenizer class name prefixes that identify it
    model_types: tuple[str, ...] = ()    # else model types that do
    vocab_marker: str | None = None      # else a token its vocabulary holds
    codes: Mapping[str, str] | str | None = None   # ISO -> code, ISO, or None: no codes
    # The text before every source: str.format with src/tgt (ISO) and src_name/tgt_name.
    prefix: str = ""
    # How generation starts in the target language: the code's token id ("token"), the
    # tokenizer's get_lang_id ("lang_id"); None: the prefix says it.
    forced_bos: str | None = None
    suppress_special: bool = False       # a random test model must still emit words, not tags

    @property
    def takes_codes(self) -> bool:
        """The tokenizer takes the pair as language codes (`src_lang`, `tgt_lang`)."""
        return self.codes is not None

    def code(self, iso: str) -> str | None:
        """The family's code of `iso`; None where its model lacks the language."""
        if self.codes == ISO:
            return iso
        return self.codes.get(iso) if isinstance(self.codes, Mapping) else None

    def matches(self, tokenizer, model_type: str) -> bool:
        if self.tokenizers:
            return type(tokenizer).__name__.startswith(self.tokenizers)
        if self.model_types:
            return model_type in self.model_types
        return self.vocab_marker is not None and self.vocab_marker in tokenizer.get_vocab()


# In the order they are tried: the tokenizer's class first, then the model type, then vocab.
FAMILIES = {family.name: family for family in (
    Family("mbart50", tokenizers=("MBart",), codes=MBART50, forced_bos="token"),
    Family("nllb", tokenizers=("Nllb",), codes=NLLB, forced_bos="token"),
    Family("m2m100", tokenizers=("M2M100",), codes=ISO, forced_bos="lang_id"),
    Family("t5", model_types=("t5", "mt5"), prefix="translate {src_name} to {tgt_name}: "),
    Family("tags", vocab_marker="<2en>", prefix="<2{tgt}> ", suppress_special=True),
)}


def family_of(tokenizer, model_type: str) -> Family:
    """The family of a loaded tokenizer and model type; ValueError naming what is known."""
    found = next((f for f in FAMILIES.values() if f.matches(tokenizer, model_type)), None)
    if found is None:
        raise ValueError(f"{type(tokenizer).__name__} ({model_type}): no way known to tell "
                         "this model the target language; use mBART-50, NLLB/M2M100, (m)T5 "
                         "or a model with <2xx> tags")
    return found


def code_spellings() -> dict[str, str]:
    """Every family's code (lower case) -> the ISO code it stands for."""
    return {code.lower(): iso for family in FAMILIES.values()
            if isinstance(family.codes, Mapping) for iso, code in family.codes.items()}
