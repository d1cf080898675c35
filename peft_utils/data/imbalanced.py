"""An imbalanced SIB-200 tree, skewed like SemEval-2023 subtask 1 (genre).

Most genre training articles are opinion pieces, a fifth are reporting and satire is rare.
SIB-200 is balanced, so the demo data cannot show what that does to a short run. This keeps
three topics per language at about 76% / 19% / 5% (the real genre task's shape), in the
SIB-200 layout, so that every loader, scenario and preset works on it unchanged:

    python -m peft_utils data imbalance --src data/sib200 --out data/sib200-imbalanced

Each language draws its own sentences (a fixed seed per language), as the demo's subsetting
does, so that the parallel corpus does not give every language the same sentences.
"""
from __future__ import annotations

import random
import zlib
from pathlib import Path

from peft_utils.core.runs import atomic_write_text
from peft_utils.data.sib200 import HEADER, load_sib200

TOPICS = ("science/technology", "travel", "politics")   # majority, minority, rare
SHARES = (0.76, 0.19, 0.05)
SIZES = {"train": 64, "dev": 32, "test": 32}           # rows per language and split


def counts(size: int, shares=SHARES) -> list[int]:
    """Rows per topic for `size` rows: the rarer topics rounded, at least one each, the
    majority the rest."""
    rare = [max(1, round(size * share)) for share in shares[1:]]
    return [size - sum(rare), *rare]


def make_imbalanced_sib200(src: str | Path, out: str | Path, topics=TOPICS, shares=SHARES,
                           sizes: dict[str, int] | None = None) -> Path:
    """Write the imbalanced tree under `out` from the SIB-200 tree at `src`; returns `out`."""
    src, out = Path(src), Path(out)
    sizes = sizes or SIZES
    folders = sorted(p.name for p in src.iterdir() if p.is_dir())
    for folder in folders:
        for split, size in sizes.items():
            frame = load_sib200(src, [folder], split)
            rng = random.Random(zlib.crc32(f"{folder}-{split}".encode()))
            rows_out = []
            for topic, n in zip(topics, counts(size, shares)):
                rows = frame[frame["labels"].map(lambda x: x[0] == topic)]
                if len(rows) < n:
                    raise ValueError(f"{src / folder / split}.tsv has {len(rows)} {topic} rows, "
                                     f"{n} needed; lower the split's size")
                chosen = rng.sample(range(len(rows)), n)
                rows_out += [f"{rows['id'].iloc[i]}\t{topic}\t{rows['text'].iloc[i]}"
                             for i in chosen]
            rng.shuffle(rows_out)   # topics interleaved, as in a release file
            atomic_write_text(out / folder / f"{split}.tsv",
                              "\n".join(["\t".join(HEADER), *rows_out]) + "\n")
    return out
