"""Languages of the MT study: ISO 639-1 codes in configs and outputs, each model family's own
code where a tokenizer needs one, and the close/distant grouping of the study. A data set's
own file codes (NTREX's deu, zho-CN) are its registry entry's `languages`
(peft_utils.data.registry), not a column here."""
from __future__ import annotations

from dataclasses import dataclass

from peft_utils.data.registry import PARALLEL_BUILTIN


@dataclass(frozen=True)
class Lang:
    iso: str
    name: str
    mbart50: str | None        # mBART-50 language code (None: not among its 50 languages)
    nllb: str                  # NLLB-200 code (FLORES-200)
    group: str                 # close / distant to English (the study's contrast), or other


LANGS = {lang.iso: lang for lang in (
    Lang("en", "English", "en_XX", "eng_Latn", "source"),
    Lang("de", "German", "de_DE", "deu_Latn", "close"),
    Lang("fr", "French", "fr_XX", "fra_Latn", "close"),
    Lang("es", "Spanish", "es_XX", "spa_Latn", "close"),
    Lang("it", "Italian", "it_IT", "ita_Latn", "close"),
    Lang("ka", "Georgian", "ka_GE", "kat_Geor", "distant"),
    Lang("ja", "Japanese", "ja_XX", "jpn_Jpan", "distant"),
    Lang("zh", "Chinese", "zh_CN", "zho_Hans", "distant"),
    Lang("hi", "Hindi", "hi_IN", "hin_Deva", "distant"),
    Lang("pl", "Polish", "pl_PL", "pol_Latn", "other"),
    Lang("ru", "Russian", "ru_RU", "rus_Cyrl", "other"),
    Lang("el", "Greek", None, "ell_Grek", "other"),
    Lang("sw", "Swahili", "sw_KE", "swh_Latn", "other"),
)}
CLOSE = tuple(k for k, v in LANGS.items() if v.group == "close")
DISTANT = tuple(k for k, v in LANGS.items() if v.group == "distant")
# Every accepted spelling -> ISO: ISO itself, the NLLB and mBART codes, and the file codes of
# the built-in parallel data sets (NTREX's deu, zho-CN).
_ALIASES = {
    **{code.lower(): iso for entry in PARALLEL_BUILTIN.values()
       for code, iso in entry.languages.items() if iso in LANGS},
    **{alias.lower(): lang.iso for lang in LANGS.values()
       for alias in (lang.iso, lang.nllb, lang.mbart50) if alias}}


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
