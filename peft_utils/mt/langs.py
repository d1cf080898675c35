"""Languages of the MT study: ISO 639-1 codes in configs and outputs, each model family's own
code where a tokenizer needs one, and the close/distant grouping of the study."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Lang:
    iso: str
    name: str
    ntrex: str                 # file suffix in NTREX-128 (newstest2019-ref.<ntrex>.txt)
    mbart50: str | None        # mBART-50 language code (None: not among its 50 languages)
    nllb: str                  # NLLB-200 code (FLORES-200)
    group: str                 # close / distant to English (the study's contrast), or other


LANGS = {lang.iso: lang for lang in (
    Lang("en", "English", "eng", "en_XX", "eng_Latn", "source"),
    Lang("de", "German", "deu", "de_DE", "deu_Latn", "close"),
    Lang("fr", "French", "fra", "fr_XX", "fra_Latn", "close"),
    Lang("es", "Spanish", "spa", "es_XX", "spa_Latn", "close"),
    Lang("it", "Italian", "ita", "it_IT", "ita_Latn", "close"),
    Lang("ka", "Georgian", "kat", "ka_GE", "kat_Geor", "distant"),
    Lang("ja", "Japanese", "jpn", "ja_XX", "jpn_Jpan", "distant"),
    Lang("zh", "Chinese", "zho-CN", "zh_CN", "zho_Hans", "distant"),
    Lang("hi", "Hindi", "hin", "hi_IN", "hin_Deva", "distant"),
    Lang("pl", "Polish", "pol", "pl_PL", "pol_Latn", "other"),
    Lang("ru", "Russian", "rus", "ru_RU", "rus_Cyrl", "other"),
    Lang("el", "Greek", "ell", None, "ell_Grek", "other"),
    Lang("sw", "Swahili", "swa", "sw_KE", "swh_Latn", "other"),
)}
CLOSE = tuple(k for k, v in LANGS.items() if v.group == "close")
DISTANT = tuple(k for k, v in LANGS.items() if v.group == "distant")
# Every accepted spelling -> ISO: ISO itself, the NTREX suffix, the NLLB and mBART codes.
_ALIASES = {alias.lower(): lang.iso for lang in LANGS.values()
            for alias in (lang.iso, lang.ntrex, lang.nllb, lang.mbart50) if alias}


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
