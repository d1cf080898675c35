"""Bad input stops with a clear error (file, line, fix) before any training starts: malformed
data trees through train_and_evaluate and `grid run`, malformed configs, grids and notebook
parameters; random label lines either load completely or raise DataError; untrusted files are
never unpickled or executed."""
from __future__ import annotations

import csv
import io
import json
import re
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fixtures_data import make_semeval_tree
from peft_utils.classification.config import RunConfig
from peft_utils.classification.notebook import build_config
from peft_utils.classification.training import train_and_evaluate
from peft_utils.cli import main
from peft_utils.core.config import ConfigError
from peft_utils.core.runs import read_record
from peft_utils.data import (EMOTIONS, FRAMES, GENRES, SIB200_LABELS, TECHNIQUES, DataError,
                             load_brighter, load_semeval, load_sib200)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def no_training(monkeypatch):
    """Fails the test if a model is ever built: data are checked before that."""
    built = []
    monkeypatch.setattr("peft_utils.classification.training.build_model",
                        lambda *a, **k: built.append(1) or pytest.fail("training started"))
    return built


def semeval_config(root: Path, tiny_model: Path, tmp_path: Path, subtask: int) -> RunConfig:
    return RunConfig(dataset="semeval2023", subtask=subtask, data_root=str(root),
                     model=str(tiny_model), method="lora", train_langs=["en"], eval_langs=["en"],
                     max_length=32, max_steps=2, results_dir=str(tmp_path / "results"))


# ---- malformed SemEval trees, through train_and_evaluate -----------------------
def _lang(root: Path) -> Path:
    return root / "en"


def _rewrite(path: Path, edit) -> None:
    path.write_bytes(edit(path.read_bytes()))


def _first_article(root: Path, k: int) -> Path:
    return sorted((_lang(root) / f"train-articles-subtask-{k}").glob("*.txt"))[0]


CORRUPTIONS = {
    # name: (subtask, edit the tree, file named in the error, line or None, message regex)
    "truncated label file": (1, lambda r: _rewrite(_lang(r) / "train-labels-subtask-1.txt",
                                                   lambda b: b.rstrip(b"\n")[:-3]),
                             "train-labels-subtask-1.txt", 4, r"unknown label"),
    "comma delimiter": (1, lambda r: _rewrite(_lang(r) / "train-labels-subtask-1.txt",
                                              lambda b: b.replace(b"\t", b",", 1)),
                        "train-labels-subtask-1.txt", 1, r"has commas"),
    "unknown label": (1, lambda r: _rewrite(_lang(r) / "train-labels-subtask-1.txt",
                                            lambda b: b.replace(b"\t", b"\tSatire-ish #", 1)),
                      "train-labels-subtask-1.txt", 1, r"unknown label"),
    "duplicate id": (2, lambda r: _rewrite(_lang(r) / "train-labels-subtask-2.txt",
                                           lambda b: b + b.split(b"\n")[0] + b"\n"),
                     "train-labels-subtask-2.txt", 5, r"duplicate row"),
    "missing article": (1, lambda r: _first_article(r, 1).unlink(),
                        "train-labels-subtask-1.txt", 1, r"not found"),
    "missing label file": (2, lambda r: (_lang(r) / "train-labels-subtask-2.txt").unlink(),
                           "train-labels-subtask-2.txt", None, r"label file not found"),
    "invalid utf-8": (1, lambda r: _rewrite(_first_article(r, 1), lambda b: b"ok\n\xff\xfe"),
                      ".txt", 2, r"invalid UTF-8"),
    "empty article": (1, lambda r: _first_article(r, 1).write_text(" \n"),
                      ".txt", 1, r"file is empty"),
    "empty label file": (3, lambda r: (_lang(r) / "train-labels-subtask-3.txt").write_text(""),
                         "train-labels-subtask-3.txt", 1, r"file is empty"),
    "truncated template": (3, lambda r: _rewrite(_lang(r) / "train-labels-subtask-3.template",
                                                 lambda b: b.split(b"\t", 2)[0] + b"\t"),
                           "train-labels-subtask-3.template", 1, r"expected id<TAB>line<TAB>text"),
    "non-ascii line number": (3, lambda r: _rewrite(_lang(r) / "train-labels-subtask-3.txt",
                                                    lambda b: re.sub(rb"\t\d+\t", "\t²\t".encode(),
                                                                     b, count=1)),
                              "train-labels-subtask-3.txt", 1, r"not a positive integer"),
    "missing articles folder": (2, lambda r: __import__("shutil").rmtree(
        _lang(r) / "train-articles-subtask-2"), "train-articles-subtask-2", None,
        r"articles folder not found"),
}


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_malformed_semeval_tree_stops_before_training(name, tmp_path, tiny_model, no_training):
    subtask, corrupt, file_part, line, message = CORRUPTIONS[name]
    root = make_semeval_tree(tmp_path, langs=("en",), splits=("train", "dev"), n_articles=4)
    corrupt(root)
    config = semeval_config(root, tiny_model, tmp_path, subtask)
    with pytest.raises(DataError, match=message) as info:
        train_and_evaluate(config)
    text = str(info.value)
    assert file_part in info.value.path and info.value.fix, text   # file and fix named
    if line is not None:
        assert info.value.line == line and f":{line}:" in text
    assert not no_training
    record = read_record(tmp_path / "results" / config.run_id)   # the failure is recorded
    assert record["status"] == "failed" and "DataError" in record["error"]


def test_bom_and_crlf_are_read(tmp_path, tiny_model):
    from peft_utils.classification.run_data import load_frames

    root = make_semeval_tree(tmp_path, langs=("en",), splits=("train", "dev"), n_articles=4)
    for path in [_lang(root) / "train-labels-subtask-3.txt",
                 _lang(root) / "train-labels-subtask-3.template", _first_article(root, 3)]:
        _rewrite(path, lambda b: b"\xef\xbb\xbf" + b.replace(b"\n", b"\r\n"))
    frames = load_frames(semeval_config(root, tiny_model, tmp_path, 3))
    texts = frames["train"]["text"]
    assert len(texts) > 0 and not texts.str.contains("\r|\ufeff").any()


# ---- configs and paths -----------------------------------------------------------
@pytest.mark.parametrize("raw, needle", [
    ({"seed": "1"}, "seed must be an integer, got '1'"),
    ({"batch_size": 8.5}, "batch_size must be an integer"),
    ({"num_epochs": "three"}, "num_epochs must be a number"),
    ({"max_steps": 1.5}, "max_steps must be an integer"),
    ({"grad_accum": True}, "grad_accum must be an integer, got True"),
    ({"train_langs": "en"}, "train_langs must be a list of strings or null"),
    ({"extra": []}, "extra must be a mapping"),
    ({"dataset": "imdb"}, "unknown dataset 'imdb'"),
    ({"dataset": "semeval2023", "subtask": 4}, "unknown semeval2023 subtask 4; use 1 (genre)"),
    ({"eval_langs": ["en", "tlh"]}, "unknown language 'tlh'"),
    ({"warmup_steps": -1}, "warmup_steps must be >= 0"),
    ({"eval_steps": 0}, "eval_steps must be a positive integer"),
    ({"learning_rate": 30.0}, "learning_rate must be a finite number in (0, 1)"),
    ({"lora_alpha": 0}, "lora_alpha must be a positive number"),
    ({"num_epochs": 0}, "set num_epochs > 0 or max_steps > 0"),
    ({"max_steps": -5}, "max_steps must be -1"),
    ({"checkpoint_steps": -1}, "checkpoint_steps must be null"),
    ({"model": ""}, "model is empty"),
    ({"model": "/no/such/folder"}, "model folder '/no/such/folder' does not exist"),
    ({"model": "./missing-model"}, "does not exist"),
    ({"model": "~/no-such-model-here"}, "does not exist"),
    ({"model": "models/no-such-model"}, "does not exist"),
    ({"model": "a/b/c"}, "does not exist"),
])
def test_bad_config_values_are_refused(raw, needle):
    with pytest.raises(ConfigError) as err:
        RunConfig.from_dict(raw, source="my.yaml")
    assert needle in str(err.value) and str(err.value).startswith("my.yaml: ")


def test_model_must_be_a_model_folder_or_a_hub_name(tmp_path, tiny_model):
    (tmp_path / "weights.bin").write_bytes(b"x")
    for path in (tmp_path, tmp_path / "weights.bin"):
        with pytest.raises(ConfigError, match="is not a model folder \\(no config.json\\)"):
            RunConfig.from_dict({"model": str(path)})
    for name in ("xlm-roberta-large", "FacebookAI/xlm-roberta-large", str(tiny_model)):
        assert RunConfig.from_dict({"model": name}).model == name


def test_missing_paths_stop_training_before_it_starts(tmp_path, sib_root, tiny_model,
                                                      no_training):
    config = RunConfig(dataset="sib200", data_root=str(tmp_path / "nowhere"),
                       model=str(tiny_model), results_dir=str(tmp_path / "results"))
    with pytest.raises(ConfigError, match="data_root .*nowhere' does not exist"):
        train_and_evaluate(config)
    too_long = config.replace(data_root=str(sib_root), max_length=300)   # the model has 256
    with pytest.raises(ConfigError, match="max_length 300 exceeds the 256 positions"):
        train_and_evaluate(too_long)
    assert not no_training


def test_notebook_parameters_are_checked_against_the_schema(sib_root, tiny_model):
    params = dict(dataset="sib200", method="lora", scenario=None, model=str(tiny_model),
                  seed=None)
    ok = {"data_root": str(sib_root)}
    cases = [
        ({**params, "seed": "1"}, ok, r"notebook parameters: .*seed must be an integer, got '1'"),
        ({**params, "method": 5}, ok, r"method must be a string, got 5"),
        ({**params, "modle": "x"}, ok, r"unknown key\(s\) modle"),
        (params, {**ok, "batch_size": "16"}, r"batch_size must be an integer, got '16'"),
        (params, {**ok, "max_steps": None}, r"max_steps must be an integer, got None"),
    ]
    for named, overrides, message in cases:
        with pytest.raises(ConfigError, match=message):
            build_config(None, named, overrides)
    with pytest.raises(ConfigError, match="config_file must be a path"):
        build_config(5, params, ok)
    with pytest.raises(ConfigError, match="results_dir must be a path"):
        build_config(None, params, ok, results_dir=3)


# ---- grids: every bad cell at once, nothing run -----------------------------------
def _yaml(path: Path, data: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


TINY = dict(max_length=32, learning_rate=3.0e-3, batch_size=8, warmup_steps=0, max_steps=2)


def test_grid_reports_every_bad_config_cell(tmp_path, sib_root, tiny_model, capsys):
    _yaml(tmp_path / "p.yaml", {**TINY, "dataset": "sib200", "data_root": str(sib_root),
                                "model": str(tiny_model)})
    grid = _yaml(tmp_path / "g.yaml", {"presets": ["p.yaml"],
                                      "grid": {"method": ["lora", "qlora", "adapterfusion"],
                                               "seed": [1, "two"]}})
    assert main(["grid", "run", str(grid), "--results", str(tmp_path / "results")]) == 2
    err = capsys.readouterr().err
    assert "bad cells" in err
    assert "unknown method 'qlora'" in err and "unknown method 'adapterfusion'" in err
    assert "seed must be an integer, got 'two'" in err
    assert not (tmp_path / "results").exists()


def test_grid_checks_paths_and_data_of_every_cell_before_running(tmp_path, sib_root,
                                                                 tiny_model, capsys):
    bad_tree = make_semeval_tree(tmp_path, langs=("en",), splits=("train", "dev"),
                                 n_articles=3)
    _rewrite(_lang(bad_tree) / "train-labels-subtask-1.txt",
             lambda b: b.replace(b"\t", b" ", 1))
    common = {**TINY, "model": str(tiny_model), "train_langs": ["en"], "eval_langs": ["en"]}
    _yaml(tmp_path / "good.yaml", {**common, "dataset": "sib200", "data_root": str(sib_root)})
    _yaml(tmp_path / "broken-data.yaml", {**common, "dataset": "semeval2023", "subtask": 1,
                                          "data_root": str(bad_tree)})
    # (max_length differs: data paths are not part of a run's identity.)
    _yaml(tmp_path / "no-data.yaml", {**common, "dataset": "sib200", "max_length": 30,
                                      "data_root": str(tmp_path / "absent")})
    grid = _yaml(tmp_path / "g.yaml", {"presets": ["good.yaml", "broken-data.yaml",
                                                   "no-data.yaml"],
                                       "grid": {"seed": [1, 2]}})
    results = tmp_path / "results"
    assert main(["grid", "run", str(grid), "--results", str(results)]) == 2
    err = capsys.readouterr().err
    assert "4 problem(s), nothing was run" in err
    assert re.search(r"train-labels-subtask-1.txt:1: expected 2 tab-separated fields.*spaces", err)
    assert "the data problem reported for" in err                 # second seed, same data
    assert err.count("absent' does not exist") == 2
    assert not results.exists() or not any(results.iterdir())


# ---- random label files: load completely or raise DataError -----------------------
GARBAGE = st.text(st.characters(blacklist_categories=("Cs",),
                                blacklist_characters="\r\n\ufeff"), max_size=30)
# Ids and line numbers that look numeric to some parsers and not to others.
NUMBERISH = st.sampled_from(["0", "-1", "²", "١٢", " 3 ", "1.5", "", "00", "+2"])
SETTINGS = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow,
                                           HealthCheck.function_scoped_fixture])


@st.composite
def mutated(draw, lines: list[str], label_pool: list[str]) -> list[str]:
    """Valid rows with a few random edits: garbage lines, blank lines, deleted or duplicated
    rows, random labels, padded fields."""
    lines = list(lines)
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(["garbage", "blank", "drop", "dup", "label", "pad",
                                     "field", "field"]))
        i = draw(st.integers(0, max(0, len(lines) - 1)))
        if kind == "garbage":
            lines.insert(i, draw(GARBAGE))
        elif kind == "blank":
            lines.insert(i, draw(st.sampled_from(["", " ", "\t", "  \t "])))
        elif lines and kind == "drop":
            lines.pop(i)
        elif lines and kind == "dup":
            lines.insert(i, lines[i])
        elif lines and kind == "label":
            head, _, _ = lines[i].rpartition("\t")
            lines[i] = f"{head}\t{draw(st.one_of(st.sampled_from(label_pool), GARBAGE))}"
        elif lines and kind == "field":
            fields = lines[i].split("\t")
            fields[draw(st.integers(0, len(fields) - 1))] = draw(st.one_of(NUMBERISH, GARBAGE))
            lines[i] = "\t".join(fields)
        elif lines and kind == "pad":
            lines[i] = " " + lines[i].replace("\t", " \t ") + " "
    return lines


@pytest.fixture(scope="module")
def semeval_articles(tmp_path_factory) -> Path:
    return make_semeval_tree(tmp_path_factory.mktemp("prop"), langs=("en",), splits=("train",),
                             n_articles=3, n_paragraphs=2)


def _rows(lines: list[str]) -> int:
    return sum(1 for line in lines if line.strip())


def _check_complete(load, given: int, outcomes: list[str]) -> None:
    try:
        df = load()
    except DataError:
        outcomes.append("error")
        return
    summary = df.attrs["summary"]
    assert len(df) + summary["excluded"] == given, (len(df), summary["excluded"], given)
    outcomes.append("loaded")


@pytest.mark.parametrize("subtask", [1, 2, 3])
def test_random_semeval_label_lines_load_or_raise(subtask, semeval_articles):
    path = _lang(semeval_articles) / f"train-labels-subtask-{subtask}.txt"
    valid = [line for line in path.read_text(encoding="utf-8").split("\n") if line]
    pool = list({1: GENRES, 2: FRAMES, 3: TECHNIQUES}[subtask]) + ["", "a,b", "Satire"]

    @SETTINGS
    @given(mutated(valid, pool))
    def check(lines):
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        _check_complete(lambda: load_semeval(semeval_articles, subtask, "train", langs=["en"]),
                        _rows(lines), outcomes)

    outcomes: list[str] = []
    try:
        check()
    finally:
        path.write_text("\n".join(valid) + "\n", encoding="utf-8")
    assert set(outcomes) == {"loaded", "error"}   # both paths exercised


def test_random_sib200_rows_load_or_raise():
    valid = [f"{i}\t{SIB200_LABELS[i % 7]}\tsentence number {i}" for i in range(1, 6)]

    @SETTINGS
    @given(mutated(valid, list(SIB200_LABELS) + ["sport", ""]))
    def check(lines):
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "eng_Latn"
            folder.mkdir()
            (folder / "train.tsv").write_text("index_id\tcategory\ttext\n" + "\n".join(lines),
                                              encoding="utf-8")
            _check_complete(lambda: load_sib200(tmp, ["en"], "train"), _rows(lines), outcomes)

    outcomes: list[str] = []
    check()
    assert set(outcomes) == {"loaded", "error"}


CELL = st.one_of(st.sampled_from(["0", "1"]), st.sampled_from(["", " 1", "2", "yes"]), GARBAGE)


@st.composite
def brighter_rows(draw) -> list[list[str]]:
    emotions = [e for e in EMOTIONS if e != "disgust"]
    rows = [[f"eng_{i}", f"text {i}, with \"quotes\"\nand a newline",
             *[str((i + j) % 2) for j in range(len(emotions))]] for i in range(4)]
    for _ in range(draw(st.integers(0, 3))):
        i = draw(st.integers(0, len(rows) - 1))
        kind = draw(st.sampled_from(["cell", "id", "text", "short", "long", "dup"]))
        row = list(rows[i])
        if kind == "cell" and len(row) > 2:
            row[draw(st.integers(2, len(row) - 1))] = draw(CELL)
        elif kind in ("id", "text") and len(row) > 1:
            row[0 if kind == "id" else 1] = draw(GARBAGE)
        elif kind == "short" and len(row) > 1:
            row = row[: draw(st.integers(1, len(row) - 1))]
        elif kind == "long":
            row.append(draw(CELL))
        if kind == "dup":
            rows.insert(i, row)
        else:
            rows[i] = row
    return rows


def test_random_brighter_rows_load_or_raise():
    header = ["id", "text"] + [e for e in EMOTIONS if e != "disgust"]

    @SETTINGS
    @given(brighter_rows())
    def check(rows):
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerows([header, *rows])
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "train").mkdir()
            (Path(tmp) / "train" / "eng.csv").write_text(buffer.getvalue(), encoding="utf-8")
            _check_complete(lambda: load_brighter(tmp, ["en"], "train"), len(rows), outcomes)

    outcomes: list[str] = []
    check()
    assert set(outcomes) == {"loaded", "error"}


# ---- untrusted files ---------------------------------------------------------------
PACKAGE = REPO / "peft_utils"


def _sources() -> dict[Path, str]:
    return {p: p.read_text(encoding="utf-8") for p in PACKAGE.rglob("*.py")}


def test_no_remote_code_and_no_unpickling_in_the_package():
    for path, text in _sources().items():
        # No call passes trust_remote_code=True (the text may tell a user to: a merged export
        # of a mean-pooled run ships its pooling as code that the user's transformers runs).
        assert not _remote_code_calls(text), path
        assert "allow_pickle=True" not in text and "pickle.load" not in text, path
        for call in re.findall(r"torch\.load\([^)]*\)", text):
            assert "weights_only=True" in call, (path, call)
        # Both studies' load paths: configs and tokenizers without remote code; weights only
        # through core.modeling.load_pretrained (safetensors, no remote code).
        for call in _from_pretrained_calls(text):
            if call.startswith(("AutoTokenizer", "AutoConfig", "auto_class")):
                assert "trust_remote_code=False" in call, (path, call)
            assert not call.startswith("AutoModel"), (path, call)
            if call.startswith("auto_class"):
                assert "use_safetensors=True" in call, (path, call)


def _from_pretrained_calls(text: str) -> list[str]:
    """The source of every `X.from_pretrained(...)` call (calls, not strings that show one)."""
    import ast

    return [ast.get_source_segment(text, node) for node in ast.walk(ast.parse(text))
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr == "from_pretrained"]


def _remote_code_calls(text: str) -> list[str]:
    """The source of every call that passes trust_remote_code a value other than False."""
    import ast

    return [ast.get_source_segment(text, node) for node in ast.walk(ast.parse(text))
            if isinstance(node, ast.Call) and any(
                k.arg == "trust_remote_code" and not (isinstance(k.value, ast.Constant)
                                                      and k.value.value is False)
                for k in node.keywords)]


class _Payload:
    """Unpickling this writes a marker file: proof that a pickle was executed."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (Path(self.marker).write_text, ("pwned",))


def test_pickled_weights_are_never_loaded(tmp_path, tiny_model):
    import pickle

    from peft_utils.classification.models import build_model

    folder = tmp_path / "pickled-model"
    folder.mkdir()
    (folder / "config.json").write_text((tiny_model / "config.json").read_text())
    marker = tmp_path / "marker"
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps(_Payload(str(marker))))
    config = RunConfig(dataset="sib200", model=str(folder))
    with pytest.raises(FileNotFoundError, match="no \\*.safetensors weights"):
        build_model(config)
    assert not marker.exists()


def test_a_tampered_cell_spec_cannot_write_outside_the_results(tmp_path, sib_root, tiny_model):
    from peft_utils.grid.cell import main as run_cell_main
    from peft_utils.grid.cell import write_spec

    config = RunConfig(dataset="sib200", data_root=str(sib_root), model=str(tiny_model),
                       results_dir=str(tmp_path / "results"))
    spec = write_spec(config)
    raw = json.loads(spec.read_text())
    raw["run_id"] = "../../escaped"
    spec.write_text(json.dumps(raw))
    with pytest.raises(ValueError, match="invalid run id"):
        run_cell_main(str(spec))
    assert not (tmp_path / "escaped").exists()
