"""The rows one classification run uses: its training set, and dev and test per evaluation
language as far as they exist on disk.

Release trees come in several states: a split that was never released or not downloaded (no
test split, the state of SemEval-2023 Task 3 for most of its life), a test split without
labels, a zero-shot language without a folder, a split left empty by filtering. Training
needs rows and model selection needs labelled dev rows of the training languages (a
`DataError` naming the folder otherwise, before anything trains); evaluation takes whatever
exists, and `coverage` says, per split and language, what there was, so that records and
reports say "absent" rather than dropping a language without a word.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from peft_utils.classification.config import RunConfig
from peft_utils.data.errors import DataError

EVAL_SPLITS = ("dev", "test")
# What a split holds for one language (record: metrics.coverage[split][lang]).
LABELLED, UNLABELLED, EMPTY, ABSENT = "labelled", "unlabelled", "empty", "absent"


@dataclass
class RunData:
    frames: dict[str, pd.DataFrame]                 # train, dev, test (dev/test may be empty)
    coverage: dict[str, dict[str, str]] = field(default_factory=dict)
    # Rows per split and language before max_train_samples / max_eval_samples cut them.
    available: dict[str, dict[str, int]] = field(default_factory=dict)

    def notes(self) -> list[str]:
        """One readable line per split whose languages are not all labelled."""
        out = []
        for split, langs in self.coverage.items():
            by_state: dict[str, list[str]] = {}
            for lang, state in langs.items():
                if state != LABELLED:
                    by_state.setdefault(state, []).append(lang)
            for state, codes in by_state.items():
                what = {ABSENT: "absent (not on disk)", EMPTY: "empty after filtering",
                        UNLABELLED: "unlabelled (predicted, not scored)"}[state]
                out.append(f"{split} {what}: {', '.join(codes)}")
        return out

    def summary(self, config: RunConfig) -> list[str]:
        """What the run uses, one line per split: its rows per language, and where a limit
        cut them (`train: 64 of 858 rows per language (max_train_samples: 64), ...`)."""
        return [split_summary(split, frame, self.available.get(split, {}),
                              LIMIT_KEYS[split], getattr(config, LIMIT_KEYS[split]))
                for split, frame in self.frames.items()]


LIMIT_KEYS = {"train": "max_train_samples", "dev": "max_eval_samples",
              "test": "max_eval_samples"}
SHOWN_LANGS = 10   # languages named in a summary line; the rest are counted


def _listed(items: list[str]) -> str:
    more = len(items) - SHOWN_LANGS
    return ", ".join(items[:SHOWN_LANGS]) + (f", and {more} more" if more > 0 else "")


def split_summary(split: str, frame: pd.DataFrame, available: dict[str, int], key: str,
                  limit: int | None) -> str:
    """One split's rows per language; `available`: per language before the limit `key`."""
    kept = _per_language(frame)
    langs = [*available, *(lang for lang in kept if lang not in available)]
    counts = [(lang, kept.get(lang, 0), max(available.get(lang, 0), kept.get(lang, 0)))
              for lang in langs]
    if not counts:
        return f"{split}: no rows"
    used, total = sum(k for _, k, _ in counts), sum(n for *_, n in counts)
    if used == total:
        return f"{split}: {used} rows ({_listed([f'{lang} {k}' for lang, k, _ in counts])})"
    why = f"{key}: {limit}"
    if len(counts) > 1 and len({(k, n) for _, k, n in counts}) == 1:
        k, n = counts[0][1:]
        return (f"{split}: {k} of {n} rows per language ({why}), {used} of {total} in all "
                f"({_listed(langs)})")
    shown = [f"{lang} {k} of {n}" if k < n else f"{lang} {k}" for lang, k, n in counts]
    return f"{split}: {used} of {total} rows ({why}; {_listed(shown)})"


def _per_language(frame: pd.DataFrame) -> dict[str, int]:
    return {str(k): int(v) for k, v in frame["lang"].value_counts(sort=False).items()} \
        if len(frame) else {}


def subset(frame: pd.DataFrame, limit: int | None) -> pd.DataFrame:
    """At most `limit` rows per language, the same for every method and seed.

    Each language is shuffled with its own fixed seed, so a parallel corpus (SIB-200) gives
    each language different sentences, as native data would; translated rows follow the
    English rows they translate (the en+translations scenario)."""
    if limit is None or frame.empty:
        return frame.reset_index(drop=True)
    translated = (frame["origin"] == "translation") if "origin" in frame else \
        pd.Series(False, index=frame.index)
    kept = pd.concat([part.sample(frac=1.0, random_state=zlib.crc32(lang.encode())).head(limit)
                      for lang, part in frame[~translated].groupby("lang", sort=False)])
    english = set(kept.loc[kept["lang"] == "en", "id"])
    # A translation names its English row in translation_of (tables) or shares its id.
    link = frame["translation_of"] if "translation_of" in frame else frame["id"]
    kept = pd.concat([kept, frame[translated & link.isin(english)]])
    return kept.sort_index().reset_index(drop=True)


def _with_gold_flag(frame: pd.DataFrame) -> pd.DataFrame:
    """Mark rows with gold labels. A multilabel row with no label is a real answer ("none")
    unless its file has no labels at all (a SemEval test split, BRIGHTER's English test)."""
    frame = frame.copy()
    frame["has_gold"] = frame.attrs.get("summary", {}).get("unlabelled", 0) == 0
    return frame


def _state(frame: pd.DataFrame) -> str:
    if frame.empty:
        return EMPTY
    return LABELLED if frame["has_gold"].any() else UNLABELLED


def _training_rows(config: RunConfig, data: RunData) -> pd.DataFrame:
    from peft_utils.data import build_scenario
    from peft_utils.data.layout import split_path

    whole = build_scenario(
        config.dataset, config.data_root, config.scenario, langs=config.train_langs,
        subtask=config.subtask, split="train", translations_dir=config.translations_dir)
    data.available["train"] = _per_language(whole)
    train = subset(whole, config.max_train_samples)
    if train.empty:
        folders = ", ".join(str(split_path(config.dataset, config.data_root, "train", lang,
                                           config.subtask))
                            for lang in config.resolved_train_langs)
        raise DataError(folders, f"the {config.scenario} scenario has no training rows",
                        fix="training needs a non-empty train split for its training languages; "
                            "restore the train files or choose other train_langs")
    return train


def _evaluation_rows(config: RunConfig, split: str, data: RunData) -> pd.DataFrame:
    from peft_utils.data import load_split
    from peft_utils.data.layout import has_split

    parts = []
    for lang in config.resolved_eval_langs:
        if not has_split(config.dataset, config.data_root, split, lang, config.subtask):
            data.coverage[split][lang] = ABSENT
            continue
        whole = load_split(config.dataset, config.data_root, split, langs=[lang],
                           subtask=config.subtask)
        data.available.setdefault(split, {})[lang] = len(whole)
        part = subset(_with_gold_flag(whole), config.max_eval_samples)
        data.coverage[split][lang] = _state(part)
        parts.append(part)
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
        columns=["id", "lang", "text", "labels", "has_gold"])
    return frame.reset_index(drop=True)


def selection_mask(config: RunConfig, dev: pd.DataFrame):
    """The dev rows a run is selected on: labelled rows of its training languages."""
    if dev.empty:
        return dev["lang"].isin([]).to_numpy(bool)
    return (dev["has_gold"].astype(bool) & dev["lang"].isin(config.resolved_train_langs)
            ).to_numpy(bool)


def load_run_data(config: RunConfig) -> RunData:
    """Training rows of the scenario; dev and test of every evaluation language where they
    exist, with their coverage. Raises DataError when training or (selection: dev) model
    selection has nothing to work with."""
    if not Path(config.data_root).is_dir():
        raise FileNotFoundError(
            f"data_root {config.data_root!r} does not exist; prepare the data "
            "(`python -m peft_utils data prepare NAME`) or set data_root")
    data = RunData({}, coverage={s: {} for s in EVAL_SPLITS})
    data.frames["train"] = _training_rows(config, data)
    for split in EVAL_SPLITS:
        data.frames[split] = _evaluation_rows(config, split, data)
    if config.selection == "dev" and not selection_mask(config, data.frames["dev"]).any():
        from peft_utils.data.layout import split_path

        langs = config.resolved_train_langs
        where = ", ".join(str(split_path(config.dataset, config.data_root, "dev", lang,
                                         config.subtask)) for lang in langs)
        states = ", ".join(f"{lang}: {data.coverage['dev'].get(lang, 'not evaluated')}"
                           for lang in langs)
        raise DataError(where, f"no labelled dev rows for the training languages ({states}); "
                        "the best state is chosen on them",
                        fix="add the dev split of a training language, include a training "
                            "language in eval_langs, or set selection: last to keep the final "
                            "state without selection (with a fixed threshold)")
    return data


def load_frames(config: RunConfig) -> dict[str, Any]:
    """The frames of `load_run_data` (train, dev, test)."""
    return load_run_data(config).frames
