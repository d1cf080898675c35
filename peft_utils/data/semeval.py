"""SemEval-2023 Task 3 loader for the official release layout.

    <root>/<lang>/<split>-articles-subtask-<k>/article<ID>.txt
    <root>/<lang>/<split>-labels-subtask-<k>.txt
    <root>/<lang>/<split>-labels-subtask-3.template      (subtask 3 only)

Every problem in the input raises DataError naming the file, the line and the fix; the only
rows ever left out (subtask 3 label rows whose paragraph text exists nowhere) are counted in
the summary, or raise with strict=True.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable

import pandas as pd

from peft_utils.data import registry
from peft_utils.data.errors import DataError
from peft_utils.data.langs import iso_and_folder
from peft_utils.data.summary import attach, combine, excluded
from peft_utils.data.textio import delimiter_hint, numbered_lines, read_text

SPLITS = ("train", "dev", "test")
DATASET = "semeval2023"
_ARTICLE = re.compile(r"^article(.+)\.txt$")
_FIELDS = {1: "article id<TAB>genre", 2: "article id<TAB>frame1,frame2,...",
           3: "article id<TAB>line number<TAB>technique1,technique2,..."}


def articles_dir(lang_dir: Path, split: str, subtask: int) -> Path:
    return lang_dir / f"{split}-articles-subtask-{subtask}"


def label_file(lang_dir: Path, split: str, subtask: int) -> Path:
    return lang_dir / f"{split}-labels-subtask-{subtask}.txt"


def template_file(lang_dir: Path, split: str) -> Path:
    return lang_dir / f"{split}-labels-subtask-3.template"


def load_semeval(root: str | Path, subtask: int, split: str,
                 langs: Iterable[str] | None = None, strict: bool = False) -> pd.DataFrame:
    """Load one split of one subtask for `langs` (folder or ISO codes; None: every language
    folder with data for this split). Columns id, lang (ISO), text, labels (+ line for
    subtask 3); df.attrs["summary"] counts rows, labelled rows and exclusions."""
    root = Path(root)
    k = _subtask(subtask)
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    if not root.is_dir():
        raise DataError(root, "data root not found",
                        fix="point --root at the release folder that holds en/, fr/, ge/, ...")
    frames = [load_language(lang_dir, iso, k, split, strict=strict)
              for lang_dir, iso in _language_dirs(root, k, split, langs)]
    return combine(frames)


def _subtask(subtask) -> int:
    """The subtask number, checked against the registry (ValueError naming the choices)."""
    registry.get(DATASET).task(subtask)
    return int(subtask)


# ---- the registry's hooks ---------------------------------------------------------------
def load_split(root, split, langs, subtask, strict):
    return load_semeval(root, subtask, split, langs=langs, strict=strict)


def split_path(root: Path, split: str, folder: str, subtask) -> Path:
    return root / folder / f"{split}-articles-subtask-{subtask}"


def has_split(root: Path, split: str, folder: str, subtask) -> bool:
    """A label file or template without its articles counts as present, so that the loader
    reports it as broken, not absent. The release names folders by its own codes (ge, po,
    gr); ISO-named ones are read too."""
    iso = registry.get(DATASET).to_iso(folder)
    return any(has_split_files(root / name, split, int(subtask)) for name in (folder, iso))


def has_split_files(lang_dir: Path, split: str, k: int) -> bool:
    return (articles_dir(lang_dir, split, k).is_dir() or label_file(lang_dir, split, k).is_file()
            or (k == 3 and template_file(lang_dir, split).is_file()))


def _language_dirs(root: Path, k: int, split: str, langs: Iterable[str] | None):
    table = registry.get(DATASET).languages
    if langs is None:
        found = []
        for folder, iso in table.items():
            # The release uses folder codes; an ISO-named folder is accepted as well.
            for name in (folder, iso):
                if has_split_files(root / name, split, k):
                    found.append((root / name, iso))
                    break
        if not found:
            raise DataError(root, f"no language folder has {split} data for subtask {k}",
                            fix="point --root at the release folder that holds en/, fr/, ge/, ...")
        return found
    out = []
    for code in dict.fromkeys(langs):
        iso, folder = iso_and_folder(DATASET, code, root)
        lang_dir = next((root / n for n in (folder, iso) if (root / n).is_dir()), root / folder)
        if not lang_dir.is_dir():
            present = sorted(p.name for p in root.iterdir() if p.is_dir())
            raise DataError(lang_dir, "language folder not found",
                            fix=f"folders present: {', '.join(present) or 'none'}")
        if not has_split_files(lang_dir, split, k):
            raise DataError(articles_dir(lang_dir, split, k), "not found",
                            fix="es, gr and ka only have test data in the release")
        out.append((lang_dir, iso))
    return out


def load_language(lang_dir: str | Path, lang: str, subtask: int, split: str, *,
                  strict: bool = False, labels_from: Path | None = None) -> pd.DataFrame:
    """One language folder. `labels_from` reads the labels from another folder's label file
    (the English one, for machine-translated copies of the English articles)."""
    lang_dir = Path(lang_dir)
    k = _subtask(subtask)
    labels_path = Path(labels_from) if labels_from else label_file(lang_dir, split, k)
    art_dir = articles_dir(lang_dir, split, k)
    articles = _list_articles(art_dir)
    if labels_path.is_file():
        rows = _read_labels(labels_path, k)
    elif split == "test":
        rows = None  # unlabelled test split: every article (ST1/2) or paragraph (ST3)
    else:
        raise DataError(labels_path, "label file not found",
                        fix=f"the {split} split needs its label file; only test may be unlabelled")
    if k == 3:
        df, reasons, source = _paragraphs(lang_dir, split, art_dir, articles, labels_path, rows,
                                          strict)
    else:
        df, reasons, source = _articles(art_dir, articles, labels_path, rows)
    df.insert(1, "lang", lang)
    return attach(df, excluded_reasons=reasons, source=source)


def article_files(art_dir: Path) -> dict[str, Path]:
    """article id -> its article<ID>.txt in `art_dir` (empty when the folder is absent)."""
    return _list_articles(art_dir) or {}


def _list_articles(art_dir: Path) -> dict[str, Path] | None:
    if not art_dir.is_dir():
        return None
    found = {}
    for path in art_dir.iterdir():
        m = _ARTICLE.match(path.name)
        if m and path.is_file():
            found[m.group(1)] = path
    return dict(sorted(found.items(), key=lambda kv: _id_key(kv[0])))


def _id_key(article_id: str):
    number = _is_number(article_id)
    return (not number, int(article_id) if number else 0, article_id)


def _read_labels(path: Path, k: int) -> list[tuple[int, str, int | None, list[str]]]:
    """(file line, article id, paragraph line or None, labels) per label row."""
    allowed = registry.get(DATASET).task(k).labels
    n_fields = (2,) if k < 3 else (2, 3)  # ST3: a trailing empty technique field may be cut
    rows, first_seen = [], {}
    lines = numbered_lines(read_text(path))
    if not lines:
        raise DataError(path, "label file has no rows", line=1, fix="restore it from the release")
    for ln, line in lines:
        fields = line.split("\t")
        if len(fields) not in n_fields:
            raise DataError(path, f"expected {' or '.join(map(str, n_fields))} tab-separated "
                            f"fields, found {len(fields)}{delimiter_hint(line)}", line=ln,
                            fix=f"write each row as {_FIELDS[k]}")
        article_id = fields[0].strip()
        if not article_id:
            raise DataError(path, "empty article id", line=ln, fix=f"write {_FIELDS[k]}")
        par = None
        if k == 3:
            par_text = fields[1].strip()
            if not _is_number(par_text) or int(par_text) < 1:
                raise DataError(path, f"paragraph line number {par_text!r} is not a positive "
                                "integer", line=ln, fix=f"write {_FIELDS[k]}")
            par = int(par_text)
        raw = fields[-1].strip() if len(fields) > (1 if k < 3 else 2) else ""
        labels = list(dict.fromkeys(x.strip() for x in raw.split(",") if x.strip()))
        if k == 1 and len(labels) != 1:
            raise DataError(path, f"subtask 1 needs exactly one genre, found {len(labels)}",
                            line=ln, fix=f"use one of {', '.join(allowed)}")
        for label in labels:
            if label not in allowed:
                raise DataError(path, f"unknown label {label!r}", line=ln,
                                fix=f"subtask {k} labels are: {', '.join(allowed)}")
        key = (article_id, par)
        if key in first_seen:
            what = f"article {article_id}" + (f" line {par}" if par else "")
            raise DataError(path, f"duplicate row for {what} (first on line {first_seen[key]})",
                            line=ln, fix="keep one row per " + ("(id, line)" if k == 3 else "id"))
        first_seen[key] = ln
        rows.append((ln, article_id, par, labels))
    return rows


def _is_number(text: str) -> bool:
    # str.isdigit accepts "²" and other digits int() refuses.
    return text.isascii() and text.isdigit()


def _check_articles(art_dir, articles, labels_path, rows):
    """Every label row needs its article; in a labelled split every article needs a row."""
    if articles is None:
        raise DataError(art_dir, "articles folder not found",
                        fix="restore it from the release or check the split name")
    for ln, article_id, _, _ in rows:
        if article_id not in articles:
            missing = art_dir / f"article{article_id}.txt"
            raise DataError(labels_path, f"article {article_id}: {missing} not found", line=ln,
                            fix="restore the article file or remove its label row")
    labelled = {r[1] for r in rows}
    for article_id, path in articles.items():
        if article_id not in labelled:
            raise DataError(path, f"article {article_id} has no label row in {labels_path}",
                            fix="add its label row or remove the article file")


def _articles(art_dir, articles, labels_path, rows):
    if rows is None:
        if not articles:
            raise DataError(art_dir, "no article<ID>.txt files found",
                            fix="restore the articles from the release")
        items = [(a, [], False) for a in articles]
        source = [art_dir]
    else:
        _check_articles(art_dir, articles, labels_path, rows)
        items = [(a, labels, True) for _, a, _, labels in rows]
        source = [labels_path, art_dir]
    data = [{"id": a, "text": read_text(articles[a]).rstrip(), "labels": labels, "gold": gold}
            for a, labels, gold in items]
    return pd.DataFrame(data, columns=["id", "text", "labels", "gold"]), [], source


def _read_template(path: Path) -> dict[tuple[str, int], tuple[int, str]]:
    """(article id, paragraph line) -> (template line, text)."""
    out: dict[tuple[str, int], tuple[int, str]] = {}
    for ln, line in numbered_lines(read_text(path)):
        fields = line.split("\t", 2)
        if len(fields) != 3 or not _is_number(fields[1].strip()):
            raise DataError(path, f"expected id<TAB>line<TAB>text, found {len(fields)} field(s)"
                            f"{delimiter_hint(line)}", line=ln,
                            fix="write each row as article id<TAB>line number<TAB>text")
        key = (fields[0].strip(), int(fields[1]))
        if key in out:
            raise DataError(path, f"duplicate row for article {key[0]} line {key[1]} (first on "
                            f"line {out[key][0]})", line=ln, fix="keep one row per (id, line)")
        out[key] = (ln, fields[2].strip())
    return out


def _paragraphs(lang_dir, split, art_dir, articles, labels_path, rows, strict):
    tpl_path = template_file(lang_dir, split)
    template = _read_template(tpl_path) if tpl_path.is_file() else {}
    source = [p for p in (labels_path if rows is not None else None, tpl_path, art_dir)
              if p is not None and p.exists()]
    if articles is None and not template:
        raise DataError(art_dir, "articles folder not found and no template to read "
                        "paragraphs from", fix=f"restore {art_dir.name} or {tpl_path.name}")
    cache: dict[str, list[str]] = {}

    def article_line(article_id: str, n: int) -> str:
        if articles is None or article_id not in articles:
            return ""
        if article_id not in cache:
            cache[article_id] = read_text(articles[article_id]).split("\n")
        lines = cache[article_id]
        return lines[n - 1].strip() if n <= len(lines) else ""

    data, reasons = [], []
    if rows is None:
        if template:
            for (article_id, n), (ln, text) in template.items():
                if text:
                    data.append((article_id, n, text, [], False))
                else:
                    reasons.append(excluded(tpl_path, ln, article_id, f"article {article_id} "
                                            f"line {n}: empty text in the template", paragraph=n))
        else:
            for article_id in articles:
                for n, line in numbered_lines(read_text(articles[article_id])):
                    data.append((article_id, n, line.strip(), [], False))
    else:
        if articles is not None:
            _check_articles(art_dir, articles, labels_path, rows)
        for ln, article_id, n, labels in rows:
            text = template.get((article_id, n), (0, ""))[1] or article_line(article_id, n)
            if text:
                data.append((article_id, n, text, labels, True))
                continue
            message = (f"no text for article {article_id} line {n}: not in {tpl_path.name} and "
                       f"not a non-empty line of article{article_id}.txt")
            if strict:
                raise DataError(labels_path, message, line=ln,
                                fix="add the paragraph to the template, fix the line number, or "
                                    "load with strict=False to exclude and report such rows")
            reasons.append(excluded(labels_path, ln, article_id, message, paragraph=n))
    df = pd.DataFrame(data, columns=["id", "line", "text", "labels", "gold"])
    df["line"] = df["line"].astype(int)
    return df[["id", "text", "labels", "line", "gold"]], reasons, source


def translations(root, subtask, split, langs, translations_dir, strict) -> list[pd.DataFrame]:
    """The registry's `translations` hook: machine translations of the English articles in
    the release layout under `translations_dir`, labelled from the English label file (the
    scenario marks their origin; see peft_utils.data.scenarios.build_scenario)."""
    entry = registry.get(DATASET)
    if translations_dir is None:
        raise DataError(root, f"scenario en+translations for {entry.name} needs translations_dir",
                        fix="pass translations_dir: machine translations of the English "
                            "articles in the release layout, <dir>/<lang>/<split>-articles-"
                            "subtask-<k>/article<ID>.txt")
    tdir = Path(translations_dir)
    if not tdir.is_dir():
        raise DataError(tdir, "translations folder not found",
                        fix="create it in the release layout: <lang>/<split>-articles-subtask-<k>/")
    table = entry.languages
    if langs is None:
        found = [iso for folder, iso in table.items() if iso != "en"
                 and any((tdir / n).is_dir() for n in (folder, iso))]
        if not found:
            raise DataError(tdir, "no language folder found",
                            fix="expected folders such as fr/, ge/, it/, po/, ru/")
        targets = found
    else:
        targets = entry.translation_targets(langs)
    labels = label_file(Path(root) / "en", split, int(subtask))
    frames = []
    for iso in targets:
        folder = next(f for f, i in table.items() if i == iso)
        lang_dir = next((tdir / n for n in (folder, iso) if (tdir / n).is_dir()), tdir / folder)
        if not lang_dir.is_dir():
            raise DataError(lang_dir, f"no translations for {iso}",
                            fix="add the folder or leave the language out of langs")
        frames.append(load_language(lang_dir, iso, subtask, split, strict=strict,
                                    labels_from=labels))
    return frames

