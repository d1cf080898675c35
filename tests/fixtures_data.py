"""Builders of small data trees in each data set's official layout, written into tmp_path.

Shared by the data, training and grid tests. The texts are synthetic but label-correlated:
each label has its own cue words (shared across languages, like names and loanwords, plus
language-specific filler), so a tiny classifier can learn them and cross-lingual transfer is
possible. Every builder is deterministic for a given `seed` and returns the data root.
"""
from __future__ import annotations

import csv
import io
import json
import random
from pathlib import Path
from typing import Iterable, Sequence

import yaml

from peft_utils.data.labels import EMOTIONS, FRAMES, GENRES, SIB200_LABELS, TECHNIQUES
from peft_utils.data.langs import to_folder, to_iso

# Neutral filler per ISO language, so languages differ in vocabulary and script.
FILLER = {
    "en": ["The city council met on Tuesday", "Residents gathered near the station",
           "The report was published this week", "Officials spoke to the press"],
    "fr": ["Le conseil municipal s'est réuni mardi", "Les habitants se sont rassemblés",
           "Le rapport a été publié cette semaine", "Les responsables ont parlé à la presse"],
    "de": ["Der Stadtrat tagte am Dienstag", "Die Anwohner versammelten sich am Bahnhof",
           "Der Bericht wurde diese Woche veröffentlicht", "Beamte sprachen mit der Presse"],
    "it": ["Il consiglio comunale si è riunito martedì", "I residenti si sono radunati",
           "Il rapporto è stato pubblicato", "I funzionari hanno parlato alla stampa"],
    "pl": ["Rada miasta zebrała się we wtorek", "Mieszkańcy zebrali się przy dworcu",
           "Raport opublikowano w tym tygodniu", "Urzędnicy rozmawiali z prasą"],
    "ru": ["Городской совет собрался во вторник", "Жители собрались у вокзала",
           "Доклад был опубликован на этой неделе", "Чиновники говорили с прессой"],
    "es": ["El ayuntamiento se reunió el martes", "Los vecinos se reunieron en la estación",
           "El informe se publicó esta semana", "Los funcionarios hablaron con la prensa"],
    "el": ["Το δημοτικό συμβούλιο συνεδρίασε την Τρίτη", "Οι κάτοικοι συγκεντρώθηκαν",
           "Η έκθεση δημοσιεύθηκε αυτή την εβδομάδα", "Αξιωματούχοι μίλησαν στον Τύπο"],
    "ka": ["საკრებულო სამშაბათს შეიკრიბა", "მცხოვრებლები სადგურთან შეიკრიბნენ",
           "მოხსენება ამ კვირაში გამოქვეყნდა", "ოფიციალურმა პირებმა პრესას ესაუბრეს"],
    "pt": ["A câmara reuniu-se na terça-feira", "Os moradores reuniram-se na estação"],
    "ro": ["Consiliul local s-a reunit marți", "Locuitorii s-au adunat la gară"],
    "uk": ["Міська рада зібралася у вівторок", "Мешканці зібралися біля вокзалу"],
    "sv": ["Kommunfullmäktige möttes i tisdags", "Invånarna samlades vid stationen"],
    "hi": ["नगर परिषद की बैठक मंगलवार को हुई", "निवासी स्टेशन के पास इकट्ठा हुए"],
    "am": ["የከተማው ምክር ቤት ማክሰኞ ተሰብስቧል", "ነዋሪዎች በጣቢያው አጠገብ ተሰበሰቡ"],
}

GENRE_CUES = {
    "reporting": "according to officials statement confirmed reported figures",
    "opinion": "I believe we must clearly should frankly in my view",
    "satire": "hilariously unicorn absurdly banana allegedly ridiculous",
}
# Two cue words per frame, derived from the frame's name so they stay unique.
FRAME_CUES = {f: " ".join(w.lower() + "cue" for w in f.split("_")[:2]) for f in FRAMES}
TECHNIQUE_CUES = {t: " ".join(w.lower() + "tech" for w in t.replace("-", "_").split("_")[:2])
                  for t in TECHNIQUES}

SIB200_CUES = {
    "science/technology": "NASA laboratory satellite",
    "travel": "Lonely-Planet hotel passport",
    "politics": "Parliament election minister",
    "sports": "FIFA football champion",
    "health": "WHO vaccine hospital",
    "entertainment": "Hollywood film concert",
    "geography": "Himalaya river continent",
}
EMOTION_CUES = {
    "anger": "furious rage", "disgust": "gross yuck", "fear": "terrified scream",
    "joy": "delighted yay", "sadness": "tears grief", "surprise": "wow unexpected",
}


def _filler(lang: str, rng: random.Random) -> str:
    return rng.choice(FILLER.get(lang, FILLER["en"]))


# ---------------------------------------------------------------- SemEval-2023 Task 3
def make_semeval_tree(tmp_path: Path, langs: Sequence[str] = ("en", "ge", "es"),
                      subtasks: Sequence[int] = (1, 2, 3),
                      splits: Sequence[str] = ("train", "dev", "test"),
                      n_articles: int = 6, n_paragraphs: int = 4,
                      test_only: Iterable[str] = ("es", "gr", "ka"),
                      labelled_test: bool = False, template_titles: bool = False,
                      textless_rows: int = 0, name: str = "semeval2023",
                      seed: int = 0) -> Path:
    """A SemEval-2023 Task 3 release tree at tmp_path/name; returns that root.

    langs: folder or ISO codes; written under the release's folder codes (ge, po, gr).
    test_only: languages that get only the test split, as es/gr/ka in the release.
    labelled_test: write label files for the test split too (the release has none).
    n_articles: articles per language and split; every article has a title (line 1), a
    blank line, then n_paragraphs paragraphs separated by blank lines.
    Subtask 3: one label row per non-empty article line (title included, some with no
    technique); the template lists the paragraphs but, as in the real release, not the
    titles unless template_titles, so titles exercise the article-file fallback.
    textless_rows: extra ST3 label rows (per labelled language/split) pointing past the
    article's end: no text anywhere, so the loader must exclude and report them.
    Article ids are unique per (language, split) so trees can be merged.
    """
    root = Path(tmp_path) / name
    test_only = {to_iso("semeval2023", c) for c in test_only}
    for li, code in enumerate(langs):
        iso, folder = to_iso("semeval2023", code), to_folder("semeval2023", code)
        for si, split in enumerate(splits):
            if iso in test_only and split != "test":
                continue
            rng = random.Random(f"{seed}-{iso}-{split}")
            articles = [_semeval_article(iso, rng, n_paragraphs) for _ in range(n_articles)]
            ids = [f"{7 + li}{si}{i:05d}" for i in range(n_articles)]
            labelled = split != "test" or labelled_test
            write_semeval_split(root / folder, split, dict(zip(ids, articles)), subtasks,
                                labelled=labelled, template_titles=template_titles,
                                textless_rows=textless_rows if labelled else 0)
    return root


def _semeval_article(lang: str, rng: random.Random, n_paragraphs: int) -> dict:
    genre = rng.choice(GENRES)
    frames = rng.sample(FRAMES, rng.randint(1, 3))
    lines, techniques = [], []
    for p in range(n_paragraphs + 1):  # entry 0 is the title
        techs = rng.sample(TECHNIQUES, rng.choice((0, 1, 1, 2)))
        words = [_filler(lang, rng), GENRE_CUES[genre].split()[p % 5],
                 FRAME_CUES[frames[p % len(frames)]]] + [TECHNIQUE_CUES[t] for t in techs]
        if p:
            words.append(f"{_filler(lang, rng).lower()}, {GENRE_CUES[genre]}.")
        lines.append(" ".join(words))
        techniques.append(techs)
    return {"genre": genre, "frames": frames, "lines": lines, "techniques": techniques}


def article_file_lines(article: dict) -> list[str]:
    """The article file's lines: title, blank, paragraphs separated by blank lines."""
    out = [article["lines"][0], ""]
    for paragraph in article["lines"][1:]:
        out += [paragraph, ""]
    return out[:-1]


def write_semeval_split(lang_dir: Path, split: str, articles: dict[str, dict],
                        subtasks: Sequence[int] = (1, 2, 3), labelled: bool = True,
                        template_titles: bool = False, textless_rows: int = 0,
                        write_labels: bool = True) -> None:
    """Write one language/split in the release layout from {id: article dict}."""
    lang_dir.mkdir(parents=True, exist_ok=True)
    for k in subtasks:
        art_dir = lang_dir / f"{split}-articles-subtask-{k}"
        art_dir.mkdir(parents=True, exist_ok=True)
        for article_id, art in articles.items():
            (art_dir / f"article{article_id}.txt").write_text(
                "\n".join(article_file_lines(art)) + "\n", encoding="utf-8")
        rows, template = [], []
        for article_id, art in articles.items():
            if k == 1:
                rows.append(f"{article_id}\t{art['genre']}")
            elif k == 2:
                rows.append(f"{article_id}\t{','.join(art['frames'])}")
            else:
                for n, line in enumerate(article_file_lines(art), start=1):
                    if not line:
                        continue
                    techs = art["techniques"][0 if n == 1 else (n - 1) // 2]
                    rows.append(f"{article_id}\t{n}\t{','.join(techs)}")
                    if n > 1 or template_titles:
                        template.append(f"{article_id}\t{n}\t{line}")
                if article_id == next(iter(articles)):  # once per split, first article
                    rows += [f"{article_id}\t{900 + extra}\t" for extra in range(textless_rows)]
        if k == 3:
            (lang_dir / f"{split}-labels-subtask-3.template").write_text(
                "\n".join(template) + "\n", encoding="utf-8")
        if labelled and write_labels:
            (lang_dir / f"{split}-labels-subtask-{k}.txt").write_text(
                "\n".join(rows) + "\n", encoding="utf-8")


def make_semeval_translations(tmp_path: Path, semeval_root: Path,
                              langs: Sequence[str] = ("fr", "ge"),
                              subtasks: Sequence[int] = (1, 2, 3), split: str = "train",
                              name: str = "translations") -> Path:
    """Fake machine translations of the English split, in the release layout, no labels.

    Each non-empty line gets a language tag prefix, so line numbers (ST3) are kept."""
    out = Path(tmp_path) / name
    for code in langs:
        iso, folder = to_iso("semeval2023", code), to_folder("semeval2023", code)
        for k in subtasks:
            src = semeval_root / "en" / f"{split}-articles-subtask-{k}"
            dst = out / folder / f"{split}-articles-subtask-{k}"
            dst.mkdir(parents=True, exist_ok=True)
            for path in sorted(src.glob("article*.txt")):
                lines = path.read_text(encoding="utf-8").split("\n")
                (dst / path.name).write_text("\n".join(
                    f"[{iso}] {line}" if line.strip() else line for line in lines),
                    encoding="utf-8")
            template = semeval_root / "en" / f"{split}-labels-subtask-3.template"
            if k == 3 and template.is_file():
                rows = [r.split("\t", 2) for r in template.read_text(encoding="utf-8").split("\n")
                        if r.strip()]
                (out / folder / template.name).write_text(
                    "".join(f"{a}\t{n}\t[{iso}] {t}\n" for a, n, t in rows), encoding="utf-8")
    return out


# ---------------------------------------------------------------- SIB-200
def make_sib200_tree(tmp_path: Path,
                     langs: Sequence[str] = ("eng_Latn", "fra_Latn", "deu_Latn"),
                     sizes: dict[str, int] | None = None, labels_file: bool = True,
                     name: str = "sib200", seed: int = 0) -> Path:
    """A SIB-200 tree at tmp_path/name: <lang_Script>/{train,dev,test}.tsv (+ labels.txt).

    Fully parallel like the real set: the same index_ids, in the same order, with the same
    category in every language. sizes: rows per split (default train 28, dev 7, test 14;
    every category appears in train). Index ids are distinct across splits."""
    root = Path(tmp_path) / name
    sizes = sizes or {"train": 28, "dev": 7, "test": 14}
    rng = random.Random(seed)
    next_id = 1
    plan: dict[str, list[tuple[str, str, int]]] = {}
    for split, n in sizes.items():
        rows = []
        for i in range(n):
            rows.append((str(next_id), SIB200_LABELS[i % len(SIB200_LABELS)], rng.randrange(97)))
            next_id += rng.randint(1, 3)
        rng.shuffle(rows)
        plan[split] = rows
    for code in langs:
        iso, folder = to_iso("sib200", code), to_folder("sib200", code)
        (root / folder).mkdir(parents=True, exist_ok=True)
        for split, rows in plan.items():
            lines = ["index_id\tcategory\ttext"]
            for idx, cat, salt in rows:
                filler = FILLER[iso][salt % len(FILLER[iso])]
                lines.append(f"{idx}\t{cat}\t{filler}: {SIB200_CUES[cat]} \"{salt}\".")
            (root / folder / f"{split}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    if labels_file:
        (root / "labels.txt").write_text("\n".join(SIB200_LABELS) + "\n", encoding="utf-8")
    return root


# ---------------------------------------------------------------- BRIGHTER
def make_brighter_tree(tmp_path: Path, langs: Sequence[str] = ("eng", "deu", "rus"),
                       sizes: dict[str, int] | None = None, unlabelled_eng_test: bool = True,
                       name: str = "brighter", seed: int = 0) -> Path:
    """A BRIGHTER track A tree at tmp_path/name: {train,dev,test}/<code>.csv.

    English has no disgust column, and (unlabelled_eng_test) its test file has empty label
    cells, as upstream. Texts contain commas, quotes and newlines to exercise CSV quoting.
    sizes: rows per split (default train 30, dev 10, test 10)."""
    root = Path(tmp_path) / name
    sizes = sizes or {"train": 30, "dev": 10, "test": 10}
    for code in langs:
        iso, folder = to_iso("brighter", code), to_folder("brighter", code)
        emotions = [e for e in EMOTIONS if not (iso == "en" and e == "disgust")]
        for split, n in sizes.items():
            rng = random.Random(f"{seed}-{iso}-{split}")
            buf = io.StringIO()
            writer = csv.writer(buf, lineterminator="\n")
            writer.writerow(["id", "text"] + emotions)
            empty = iso == "en" and split == "test" and unlabelled_eng_test
            for i in range(n):
                chosen = rng.sample(emotions, rng.choice((0, 1, 1, 2)))
                cues = " ".join(EMOTION_CUES[e] for e in chosen)
                text = f"{_filler(iso, rng)}, {cues}"
                if i % 4 == 1:
                    text += ' and she said "no way", twice'
                if i % 5 == 2:
                    text += "\nsecond line, after a newline"
                values = [""] * len(emotions) if empty else [int(e in chosen) for e in emotions]
                writer.writerow([f"{folder}_{split}_track_a_{i + 1:05d}", text] + values)
            (root / split).mkdir(parents=True, exist_ok=True)
            (root / split / f"{folder}.csv").write_text(buf.getvalue(), encoding="utf-8")
    return root


# ---------------------------------------------------------------- tokenizer
def make_tiny_tokenizer(texts: Iterable[str] = (), max_length: int = 512):
    """A WordLevel fast tokenizer over the whitespace-split words of `texts` (plus the
    digits 0-999 for tests that need predictable ids), wrapped as a HF fast tokenizer with
    <s> $A </s> around every sequence."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<s>", "</s>", "<unk>"]
    vocab = {tok: i for i, tok in enumerate(specials)}
    words = [str(i) for i in range(1000)] + [w for t in texts for w in t.split()]
    for w in words:
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", vocab["<s>"]), ("</s>", vocab["</s>"])])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                   pad_token="<pad>", unk_token="<unk>",
                                   model_max_length=max_length)



# ---------------------------------------------------------------- prepare() mirrors
MIRROR_COMMIT = "0123456789abcdef0123456789abcdef01234567"


def make_prepare_mirror(tmp_path: Path, name: str = "sib200") -> tuple[Path, dict]:
    """A tiny local mirror at tmp_path/mirror/name (three data files + SOURCE_COMMIT) and a
    manifest for it, to pass to prepare(..., mirror=..., manifest=...)."""
    from peft_utils.data.prepare import build_manifest

    mirror = Path(tmp_path) / "mirror" / name
    (mirror / "eng_Latn").mkdir(parents=True)
    (mirror / "eng_Latn" / "train.tsv").write_text("index_id\tcategory\ttext\n1\ttravel\tHi\n")
    (mirror / "eng_Latn" / "dev.tsv").write_text("index_id\tcategory\ttext\n2\tsports\tGo\n")
    (mirror / "labels.txt").write_text("travel\nsports\n")
    (mirror / "SOURCE_COMMIT").write_text(MIRROR_COMMIT + "\n")
    upstream = {"eng_Latn/train.tsv": "data/annotated/eng_Latn/train.tsv",
                "eng_Latn/dev.tsv": "data/annotated/eng_Latn/dev.tsv",
                "labels.txt": "data/annotated/eng_Latn/labels.txt", "SOURCE_COMMIT": None}
    return mirror, build_manifest(name, mirror, "owner/repo", upstream)


# ---------------------------------------------------------------- your own tables
REVIEW_CUES = {"negative": "terrified scream tears grief", "neutral": "according to officials",
               "positive": "delighted yay wow"}


def make_table_tree(tmp_path: Path, fmt: str = "csv", name: str = "reviews",
                    train_langs: Sequence[str] = ("en", "de", "fr"),
                    zero_shot: Sequence[str] = ("es",), sizes: dict[str, int] | None = None,
                    multilabel: bool = False, seed: int = 0) -> Path:
    """A folder of tables with its data card, the way a researcher would hand one over.

    csv/tsv: train/dev/test files with columns review_id, lang, text, stars (multiclass:
    negative/neutral/positive) and source_id, the English review a row translates (the
    non-English rows translate English ones, so en+translations works; multilabel: the
    emotions, joined by "|"). The zero-shot
    languages appear in test only. jsonl (use with multilabel=True): one data.jsonl with a
    split field, fields id, language, content, emotions (a list, possibly empty: "no
    emotion" is an answer). Deterministic for a given seed; returns the folder."""
    root = Path(tmp_path) / name
    root.mkdir(parents=True, exist_ok=True)
    sizes = sizes or {"train": 18, "dev": 6, "test": 6}
    rng = random.Random(seed)
    rows = []
    for split, n in sizes.items():
        for i in range(n):
            labels = (sorted(rng.sample(list(EMOTION_CUES), rng.choice((0, 1, 2))))
                      if multilabel else [list(REVIEW_CUES)[i % 3]])
            langs = list(train_langs) + (list(zero_shot) if split == "test" else [])
            for lang in langs:
                cues = " ".join((EMOTION_CUES if multilabel else REVIEW_CUES)[x] for x in labels)
                rows.append({"split": split, "id": f"{split}-{i}-{lang}", "lang": lang,
                             "text": f"{_filler(lang, rng)}, {cues} {i}.", "labels": labels,
                             "source": "" if lang == "en" else f"{split}-{i}-en"})
    if fmt == "jsonl":
        lines = [json.dumps({"id": r["id"], "language": r["lang"], "content": r["text"],
                             "emotions": r["labels"], "split": r["split"]}, ensure_ascii=False)
                 for r in rows]
        (root / "data.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
        card = {"name": name, "text": "content", "labels": "emotions", "language": "language",
                "id": "id", "split": "split", "file": "data.jsonl",
                "label_set": list(EMOTION_CUES), "zero_shot": list(zero_shot)}
    else:
        sep = "\t" if fmt == "tsv" else ","
        for split in sizes:
            buffer = io.StringIO()
            writer = csv.writer(buffer, delimiter=sep, lineterminator="\n")
            writer.writerow(["review_id", "lang", "text", "stars", "source_id"])
            writer.writerows([r["id"], r["lang"], r["text"], "|".join(r["labels"]), r["source"]]
                             for r in rows if r["split"] == split)
            (root / f"{split}.{fmt}").write_text(buffer.getvalue(), encoding="utf-8")
        card = {"name": name, "text": "text", "language": "lang", "id": "review_id",
                **({"labels": "stars", "delimiter": "|"} if multilabel else {"label": "stars"}),
                "translation_of": "source_id", "zero_shot": list(zero_shot)}
    (root / "dataset.yaml").write_text(yaml.safe_dump(card, sort_keys=False), encoding="utf-8")
    return root
