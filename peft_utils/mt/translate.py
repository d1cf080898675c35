"""`python -m peft_utils translate`: machine-translate articles in the SemEval release layout.

    <in>/<src>/<split>-articles-subtask-<k>/article<ID>.txt
 -> <out>/<tgt-iso>/<split>-articles-subtask-<k>/article<ID>.txt

which is the translations folder of the classification `en+translations` scenario
(`translations_dir`). Every line is translated on its own and blank lines stay blank, so
line N of a translation is the translation of line N of the source: subtask 3 labels
(article id, line number) apply unchanged. Lines longer than the model's input are split
into sentences and the translations rejoined on the same line.

Resumable: an article whose output exists is skipped (files are written atomically, so an
existing file is complete); an article identical to one already translated for another
subtask is copied rather than translated again. `<out>/<tgt>/translation-info.json`
records the model, settings and counts.
"""
from __future__ import annotations

import hashlib
import json
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from peft_utils.core.runs import atomic_write_text

# A sentence ends at . ! ? (or their CJK forms) followed by space; used only for long lines.
_SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s+")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "translate", help="translate SemEval-layout articles with a seq2seq model",
        description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True,
                        help="hub name, local model folder, or an MT run folder (results-mt/<id>)")
    parser.add_argument("--src-lang", default="en", help="source language folder (default en)")
    parser.add_argument("--tgt-lang", required=True, nargs="+",
                        help="target language(s), e.g. fr de it pl ru (output folders use ISO)")
    parser.add_argument("--in", dest="in_dir", required=True, help="release-layout root")
    parser.add_argument("--out", dest="out_dir", required=True, help="translations root")
    parser.add_argument("--subtask", type=int, action="append", choices=(1, 2, 3),
                        help="subtask folder(s) to translate (default: every one present)")
    parser.add_argument("--split", default="train", choices=("train", "dev", "test"))
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--num-beams", type=int, default=4)
    parser.add_argument("--max-length", type=int, default=200,
                        help="source tokens per segment; longer lines are split into sentences")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
    parser.add_argument("--limit", type=int, help="translate at most N new articles per folder")
    parser.set_defaults(func=_command)


@dataclass
class Translator:
    """A loaded model and how to call it; `__call__` translates a list of segments."""
    model: Any
    tokenizer: Any
    scheme: Any
    src: str
    tgt: str
    name: str
    fine_tuned: bool = False      # an MT run: fixed to its own language pair
    batch_size: int = 16
    num_beams: int = 4
    max_length: int = 200
    precision: str = "fp32"

    def n_tokens(self, text: str) -> int:
        return len(self.tokenizer(self.scheme.sources([text], self.src, self.tgt)[0])["input_ids"])

    def __call__(self, texts: list[str]) -> list[str]:
        from peft_utils.mt.tokenize import translate_texts

        return translate_texts(self.model, self.tokenizer, self.scheme, texts, self.src,
                               self.tgt, self.batch_size, self.num_beams, self.max_length,
                               max_new_tokens=int(1.5 * self.max_length) + 10,
                               precision=self.precision, min_new_tokens=1)


def load_translator(model: str, src: str, tgt: str, device: str = "auto", **settings) -> Translator:
    """A model by hub name or folder, or a fine-tuned MT run folder (its pair must match)."""
    import torch

    from peft_utils.mt.langs import to_iso
    from peft_utils.mt.tokenize import load_tokenizer, scheme_for

    src, tgt = to_iso(src), to_iso(tgt)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    precision = "bf16" if device == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    folder = Path(model)
    if (folder / "record.json").is_file() and (folder / "checkpoint").is_dir():
        from peft_utils.mt.training import load_mt_run

        config, net, tokenizer = load_mt_run(folder)
        if (config.src_lang, config.tgt_lang) != (src, tgt):
            raise ValueError(f"{folder}: this run was fine-tuned for {config.pair}, not "
                             f"{src}-{tgt}; translate {config.pair} with it or pick another model")
        name, fine_tuned = f"{config.model} fine-tuned ({folder.name})", True
    else:
        from transformers import AutoModelForSeq2SeqLM

        from peft_utils.core.modeling import load_pretrained

        net, tokenizer = load_pretrained(AutoModelForSeq2SeqLM, model), load_tokenizer(model)
        name, fine_tuned = model, False
    net = net.to(device).eval()
    translator = Translator(net, tokenizer, scheme_for(tokenizer, net.config.model_type), src,
                            tgt, name, fine_tuned, precision=precision, **settings)
    return retarget(translator, tgt)


def retarget(translator: Translator, tgt: str) -> Translator:
    """The same loaded model for another target language (checked before any work)."""
    import dataclasses

    from peft_utils.mt.langs import to_iso

    tgt = to_iso(tgt)
    if translator.fine_tuned and tgt != translator.tgt:
        raise ValueError(f"{translator.name} was fine-tuned for {translator.src}-"
                         f"{translator.tgt}, not {translator.src}-{tgt}")
    if translator.scheme.takes_codes:
        translator.scheme.code(tgt)   # a language the model lacks fails here, not mid-run
    return dataclasses.replace(translator, tgt=tgt)


# ---- segmenting -----------------------------------------------------------------
def segments(line: str, fits: Callable[[str], bool]) -> list[str]:
    """`line` as pieces that each fit the model's input: whole, else sentences, else runs of
    words (a last resort for a sentence longer than the input)."""
    if fits(line):
        return [line]
    out: list[str] = []
    for sentence in _SENTENCE_END.split(line):
        if fits(sentence):
            out.append(sentence)
            continue
        words, piece = sentence.split(), []
        for word in words:
            if piece and not fits(" ".join(piece + [word])):
                out.append(" ".join(piece))
                piece = []
            piece.append(word)
        if piece:
            out.append(" ".join(piece))
    return [s for s in out if s.strip()]


def translate_articles(texts: list[str], translate: Callable[[list[str]], list[str]],
                       fits: Callable[[str], bool]) -> list[str]:
    """Translate several articles in one batch of segments; line structure kept."""
    plan: list[list[list[str]]] = []        # article -> line -> segments
    unique: dict[str, int] = {}
    for text in texts:
        lines = []
        for line in text.split("\n"):
            pieces = segments(line.strip(), fits) if line.strip() else []
            for piece in pieces:
                unique.setdefault(piece, len(unique))
            lines.append(pieces)
        plan.append(lines)
    translated = translate(list(unique))
    return ["\n".join(" ".join(t for t in (translated[unique[p]] for p in pieces) if t)
                      for pieces in lines) for lines in plan]


# ---- folders ----------------------------------------------------------------------
def _release():
    """The registry entry of the data set whose layout this command reads and writes (the
    SemEval release): its languages and its `layout` hook (peft_utils.data.semeval)."""
    from peft_utils.data import registry, semeval

    return registry.get(semeval.DATASET)


def _lang_dir(root: Path, code: str) -> Path:
    """The source language folder: its ISO or release folder code (en, ge/de, ...)."""
    table = _release().languages
    names = [code] + [f for f, iso in table.items() if iso == code] + \
            [iso for f, iso in table.items() if f == code]
    for name in names:
        if (root / name).is_dir():
            return root / name
    raise FileNotFoundError(f"{root}: no folder for language {code!r} (looked for "
                            f"{', '.join(dict.fromkeys(names))})")


def _articles(folder: Path) -> list[Path]:
    from peft_utils.data.semeval import article_files

    return sorted(article_files(folder).values(), key=lambda p: (len(p.name), p.name))


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class Summary:
    translated: int = 0
    skipped: int = 0          # output already there (resumed)
    copied: int = 0           # identical article already translated for another subtask
    segments: int = 0
    empty_lines: int = 0      # non-empty source lines whose translation came out empty
    folders: list[str] = field(default_factory=list)


def translate_release(translator: Translator, in_dir: str | Path, out_dir: str | Path,
                      subtasks: list[int] | None = None, split: str = "train",
                      limit: int | None = None, chunk: int = 16,
                      log: Callable[[str], None] = print) -> Summary:
    """Translate `<in>/<src>/<split>-articles-subtask-<k>/` into `<out>/<tgt>/...`."""
    in_dir, out_dir = Path(in_dir), Path(out_dir)
    release = _release()
    src_dir = _lang_dir(in_dir, translator.src)

    def articles(root: Path, folder: str, k: int) -> Path:   # the release layout's folder
        return release.folder_path(root, split, folder, k)

    ks = subtasks or sorted(k for k in release.tasks
                            if articles(src_dir.parent, src_dir.name, k).is_dir())
    if not ks:
        raise FileNotFoundError(f"{src_dir}: no {split}-articles-subtask-<k> folder")
    summary = Summary()
    done: dict[str, Path] = {}    # source digest -> a translated file, across subtasks
    for k in ks:
        source = articles(src_dir.parent, src_dir.name, k)
        target = articles(out_dir, translator.tgt, k)
        if not source.is_dir():
            raise FileNotFoundError(f"{source}: not found (subtasks present: "
                                    f"{', '.join(map(str, ks))})")
        target.mkdir(parents=True, exist_ok=True)
        summary.folders.append(str(target))
        todo = _still_to_translate(source, target, summary, done)
        todo = todo[:limit] if limit is not None else todo
        _translate_articles_of(translator, todo, target, chunk, summary, done, log)
    info = {"model": translator.name, "src_lang": translator.src, "tgt_lang": translator.tgt,
            "scheme": translator.scheme.name, "num_beams": translator.num_beams,
            "max_length": translator.max_length, "split": split, "subtasks": ks,
            "input": str(in_dir), **{k: v for k, v in vars(summary).items() if k != "folders"}}
    atomic_write_text(out_dir / translator.tgt / "translation-info.json",
                      json.dumps(info, indent=2) + "\n")
    return summary


def _still_to_translate(source: Path, target: Path, summary: Summary,
                        done: dict[str, Path]) -> list[tuple[Path, str]]:
    """The articles of `source` without a translation in `target`, as (path, digest); an
    article translated before (the same text under another subtask) is copied instead."""
    todo = []
    for path in _articles(source):
        digest = _digest(path)
        out = target / path.name
        if out.is_file():
            summary.skipped += 1
            done.setdefault(digest, out)
        elif digest in done:
            atomic_write_text(out, done[digest].read_text(encoding="utf-8"))
            summary.copied += 1
        else:
            todo.append((path, digest))
    return todo


def _translate_articles_of(translator: Translator, todo: list[tuple[Path, str]], target: Path,
                           chunk: int, summary: Summary, done: dict[str, Path],
                           log: Callable[[str], None]) -> None:
    """Translate `todo` into `target`, `chunk` articles at a time, each written atomically."""
    from peft_utils.data.textio import read_text

    def fits(text: str) -> bool:
        return translator.n_tokens(text) <= translator.max_length

    started = time.perf_counter()
    for start in range(0, len(todo), chunk):
        batch = todo[start:start + chunk]
        texts = [read_text(path, allow_empty=True) for path, _ in batch]
        counted: list[str] = []

        def counting(pieces: list[str]) -> list[str]:
            counted.extend(pieces)
            return translator(pieces)

        results = translate_articles(texts, counting, fits)
        summary.segments += len(counted)
        for (path, digest), text, result in zip(batch, texts, results):
            summary.empty_lines += sum(1 for a, b in zip(text.split("\n"), result.split("\n"))
                                       if a.strip() and not b.strip())
            end = "" if result.endswith("\n") else "\n" if text.endswith("\n") else ""
            atomic_write_text(target / path.name, result + end)
            done[digest] = target / path.name
            summary.translated += 1
        log(f"{target}: {min(start + chunk, len(todo))}/{len(todo)} articles "
            f"({time.perf_counter() - started:.0f} s)")


def _command(args) -> int:
    from peft_utils.mt.langs import to_iso

    translator = None
    for tgt in args.tgt_lang:
        if translator is None:
            translator = load_translator(args.model, args.src_lang, tgt, args.device,
                                         batch_size=args.batch_size, num_beams=args.num_beams,
                                         max_length=args.max_length)
        else:
            translator = retarget(translator, tgt)
        summary = translate_release(translator, args.in_dir, args.out_dir, args.subtask,
                                    args.split, args.limit,
                                    log=lambda line: print(line, file=sys.stderr, flush=True))
        print(f"{args.src_lang}->{to_iso(tgt)}: {summary.translated} translated, "
              f"{summary.copied} copied from another subtask, {summary.skipped} already there "
              f"(skipped); {summary.segments} segments")
        if summary.empty_lines:
            print(f"warning: {summary.empty_lines} non-empty line(s) translated to nothing; "
                  "subtask 3 rows on those lines have no text", file=sys.stderr)
    return 0
