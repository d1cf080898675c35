"""Languages of the MT study: ISO 639-1 codes in configs and outputs, and the close/distant
grouping of the study. Each model family's own codes are its row in `mt.families`, and a
data set's own file codes (NTREX's deu, zho-CN) its registry entry's `languages`
(peft_utils.data.registry): both are accepted here as spellings of the ISO code."""
from __future__ import annotations

from dataclasses import dataclass

from peft_utils.data.registry import PARALLEL_BUILTIN
from peft_utils.mt.families import code_spellings


@dataclass(frozen=True)
class Lang:
    iso: str
    name: str
    group: str                 # close / distant to English (the study's contrast), or other


LANGS = {lang.iso: lang for lang in (
    Lang("en", "English", "source"),
    Lang("de", "German", "close"),
    Lang("fr", "French", "close"),
    Lang("es", "Spanish", "close"),
    Lang("it", "Italian", "close"),
    Lang("ka", "Georgian", "distant"),
    Lang("ja", "Japanese", "distant"),
    Lang("zh", "Chinese", "distant"),
    Lang("hi", "Hindi", "distant"),
    Lang("pl", "Polish", "other"),
    Lang("ru", "Russian", "other"),
    Lang("el", "Greek", "other"),
    Lang("sw", "Swahili", "other"),
)}
CLOSE = tuple(k for k, v in LANGS.items() if v.group == "close")
DISTANT = tuple(k for k, v in LANGS.items() if v.group == "distant")
# Every accepted spelling -> ISO: ISO itself, each model family's codes, and the file codes of
# the built-in parallel data sets (NTREX's deu, zho-CN).
_ALIASES = {
    **{code.lower(): iso for entry in PARALLEL_BUILTIN.values()
       for code, iso in entry.languages.items() if iso in LANGS},
    **{code: iso for code, iso in code_spellings().items() if iso in LANGS},
    **{iso: iso for iso in LANGS}}


def to_iso(code: str) -> str:
    """`de`, `deu`, `deu_Latn`, `de_DE`, `zho-CN` -> ISO 639-1; ValueError naming the choices."""
    iso = _ALIASES.get(str(code).strip().lower())
    if iso is None:
        raise ValueError(f"unknown language {code!r}; use one of {', '.join(LANGS)} "
                         "(or the NTREX/NLLB/mBART spelling, e.g. deu, deu_Latn, de_DE)")
    return iso


def group_of(iso: str) -> str:
    return LANGS[to_iso(iso)].group


def sacrebleu_tokenizer(tgt: str) -> str:
    """BLEU tokenisation for the target: sacrebleu's defaults per script. Japanese needs
    MeCab; without it, characters (recorded in the signature, so never mixed silently)."""
    iso = to_iso(tgt)
    if iso == "zh":
        return "zh"
    if iso == "ja":
        from importlib.util import find_spec

        return "ja-mecab" if find_spec("MeCab") and find_spec("ipadic") else "char"
    return "13a"
