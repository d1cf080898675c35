"""Data layer: load, validate and combine the study's data sets.

Loaders return a pandas DataFrame with columns id, lang (ISO 639-1), text, labels (list of
str) and df.attrs["summary"] describing what was read, kept and excluded.
`prepare` is not re-exported here: the function would shadow its module
(peft_utils.data.prepare); import it from there.
"""
from peft_utils.data.brighter import load_brighter
from peft_utils.data.errors import DataError
from peft_utils.data.labels import EMOTIONS, FRAMES, GENRES, SIB200_LABELS, TECHNIQUES
from peft_utils.data.registry import is_multilabel, label_names
from peft_utils.data.long_text import encode_texts, pool_chunks
from peft_utils.data.scenarios import SCENARIOS, build_scenario, load_split
from peft_utils.data.semeval import load_semeval
from peft_utils.data.sib200 import load_sib200

__all__ = [
    "DataError", "EMOTIONS", "FRAMES", "GENRES", "SCENARIOS", "SIB200_LABELS", "TECHNIQUES",
    "build_scenario", "encode_texts", "is_multilabel", "label_names", "load_brighter",
    "load_semeval", "load_sib200", "load_split", "pool_chunks",
]
