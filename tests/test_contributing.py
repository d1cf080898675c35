"""The recipes of docs/contributing.md, done exactly as written there."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from fake_packages import install_fake_package
from test_tuning import cli, records, write_yaml

# ---- Add a method: one registry entry, with the helpers ----------------------------------
def test_recipe_add_a_method_is_one_registry_entry(monkeypatch, tmp_path, sib_root, tiny_model,
                                                   capsys):
    from peft_utils.classification.training import train_and_evaluate
    from peft_utils.cli import main
    from peft_utils.core import methods
    from test_methods import tiny

    # 1-2. The entry, written with a helper: peft's LoRA at rank 2 on the paper's targets,
    # without a paper setting (`_lora` would size it by the run's lora_r).
    entry = methods._peft("lora_r2", "LoraConfig", "LoRA at rank 2 (a recipe test)", r=2)
    monkeypatch.setitem(methods.REGISTRY, "lora_r2", entry)
    # 5. Its row in `methods`, counted like the others.
    assert main(["methods", "--json", "--config", "configs/demo/sib200.yaml",
                 "--set", f"model={tiny_model}"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["lora_r2"]["status"] == "ok"
    assert rows["lora_r2"]["method_params"] * 4 == rows["lora"]["method_params"]   # r 2 vs 8
    # 4. A run: the library receives the entry's defaults, the record says so.
    config = tiny(tmp_path, sib_root, tiny_model, "lora_r2", "results").replace(max_steps=4,
                                                                                 eval_steps=2)
    record = train_and_evaluate(config).record
    assert record["meta"]["method"]["settings"]["r"] == 2
    assert record["run_info"]["run_id"].startswith("sib200-lora_r2-multilingual-")
    assert record["costs"]["method_params"] == rows["lora_r2"]["method_params"]


# ---- Add a data set: a loader, a layout, an entry, an entry point ----------------------------
TOY_MODULE = '''
"""A toy data set in its own layout: <root>/<lang>/<split>.txt, lines "label<TAB>text"."""
from pathlib import Path

import pandas as pd

from peft_utils.data.entry import DataSet, Task
from peft_utils.data.errors import DataError
from peft_utils.data.summary import attach, combine

FOLDERS = {"english": "en", "german": "de", "spanish": "es"}


def layout(root, split, folder, subtask):
    return Path(root) / folder / f"{split}.txt"


def load(root, split, langs, subtask, strict):
    folders = [f for f in FOLDERS if layout(root, split, f, None).is_file()] if langs is None \\
        else [ENTRY.to_folder(code) for code in langs]
    frames = []
    for folder in folders:
        path, rows = layout(root, split, folder, None), []
        for ln, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            label, sep, text = line.partition("\\t")
            if not sep or label not in ENTRY.task().labels:
                raise DataError(path, f"bad line {line!r}", line=ln, fix="write label<TAB>text")
            rows.append({"id": f"{folder}-{ln}", "lang": FOLDERS[folder], "text": text,
                         "labels": [label], "gold": True})
        frames.append(attach(pd.DataFrame(rows), source=[path]))
    return combine(frames)


ENTRY = DataSet(
    name="toy", title="Toy topics", languages=FOLDERS, train_langs=("en", "de"),
    zero_shot_langs=("es",),
    tasks={None: Task(("sports", "politics"), multilabel=False, metric="macro_f1",
                      unit="sentence")},
    loader="toy_data:load", layout="toy_data:layout")
'''
CUES = {"sports": "FIFA football champion", "politics": "Parliament election minister"}
FILLER = {"english": "The report was published this week", "german": "Der Stadtrat tagte",
          "spanish": "El informe se publicó esta semana"}


def make_toy_package(folder: Path) -> Path:
    """toy_data.py and its distribution metadata, as `pip install` of a package whose
    pyproject.toml has `[project.entry-points."peft_utils.datasets"] toy = "toy_data:ENTRY"`
    would leave them."""
    return install_fake_package(folder, "toy_data", TOY_MODULE, "peft_utils.datasets",
                                {"toy": "toy_data:ENTRY"})

def make_toy_tree(root: Path) -> Path:
    for folder, filler in FILLER.items():
        for split, n in (("train", 12), ("dev", 4), ("test", 4)):
            if folder == "spanish" and split != "test":
                continue
            labels = list(CUES) * (n // 2)
            (root / folder).mkdir(parents=True, exist_ok=True)
            (root / folder / f"{split}.txt").write_text("".join(
                f"{label}\t{filler}, {CUES[label]} {i}.\n" for i, label in enumerate(labels)))
    return root


@pytest.mark.slow
def test_recipe_add_a_data_set_trains_tunes_and_reports(tmp_path, tiny_model, monkeypatch):
    plugins = make_toy_package(tmp_path / "plugins")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(plugins), os.environ.get("PYTHONPATH", "")]))
    root = make_toy_tree(tmp_path / "data" / "toy")
    listed = cli("data", "list", "--json", "--data-root", str(tmp_path / "data"), cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    toy = next(e for e in json.loads(listed.stdout) if e["name"] == "toy")
    assert toy["present"]["default"]["test"] == {"en": 4, "de": 4, "es": 4}

    write_yaml(tmp_path / "configs" / "toy.yaml", {
        "dataset": "toy", "data_root": str(root), "model": str(tiny_model), "max_length": 32,
        "batch_size": 8, "eval_batch_size": 32, "warmup_steps": 0, "max_steps": 4,
        "eval_steps": 2, "checkpoint_steps": 0})
    grid = write_yaml(tmp_path / "configs" / "g.yaml", {
        "presets": ["toy.yaml"], "grid": {"method": ["fft", "lora"], "seed": [1]},
        "tune": {"trials": 2, "seeds": [1],
                 "space": {"learning_rate": {"range": "registry", "scale": 30}}}})
    out = cli("grid", "run", str(grid), "--workers", "2", cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    done = records(tmp_path / "results")
    assert len(done) == 6 and all(r["run_info"]["run_id"].startswith("toy-") for r in done)
    finals = [r for r in done if r["run_info"]["tuning"]["stage"] == "final"]
    assert all(r["metrics"]["test"]["es"]["n"] == 4 for r in finals)   # the zero-shot language

    from peft_utils.classification.analysis import write_report

    report = write_report(tmp_path / "results", tmp_path / "tables", tmp_path / "figures",
                          n_boot=50)
    assert list(report.tables["peft_vs_fft"]["task"]) == ["toy"]
    assert "es" in set(report.tables["f1_by_language"]["lang"])


# ---- Add a study: a config class, Steps for core.pipeline, a notebook, a Study, an entry point
TOY_STUDY = '''
"""A toy study in a package of its own: the English topic of SIB-200 sentences, scored by
accuracy. Its run is core.pipeline's; what it plugs in are its Steps."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from peft_utils.core import methods, pipeline
from peft_utils.core.config import (ConfigError, RunSettings, load_with_method_overrides,
                                    model_problem, type_problems)
from peft_utils.core.pipeline import RecordParts, Steps
from peft_utils.core.study import Study

HERE = Path(__file__).resolve().parent
ADAPTER = "toy"


# 1. The config class: where and how a run executes (RunSettings), then the study's own.
@dataclass
class ToyConfig(RunSettings):
    non_identity = ("results_dir", "device", "notes", "report_to", "data_root",
                    "checkpoint_steps")
    identity_if_set = ("tuning",)
    float_keys = ("learning_rate",)
    record_schema, record_kind = str(HERE / "toy_record.json"), "toy"
    kind: str = "toy"
    data_root: str = "data/sib200"
    model: str = "xlm-roberta-base"
    method: str = "lora"
    seed: int = 42
    max_length: int = 32
    learning_rate: float = 1e-3
    num_epochs: float = 1.0
    max_steps: int = -1
    eval_steps: int | None = None
    batch_size: int = 8
    eval_batch_size: int = 32
    grad_accum: int = 1
    warmup_steps: int = 0
    weight_decay: float = 0.0
    early_stopping_patience: int | None = None

    @property
    def run_id(self) -> str:
        trial = f"-t{self.tuning['trial']}" if self.is_trial else ""
        return f"toy-{self.method}-s{self.seed}{trial}-{self.digest()}"

    def validate(self, source: str = "config") -> None:
        problems = type_problems(self)
        if self.kind != "toy":
            problems.append(f"kind must be 'toy' for a toy config, got {self.kind!r}")
        problems += [p for p in (methods.method_problem(self.method, None, "classification"),
                                 self.settings_problem(), model_problem(self.model)) if p]
        if problems:
            raise ConfigError(f"{source}: {'; '.join(problems)}")

    def path_problems(self) -> list[str]:
        return [] if Path(self.data_root).is_dir() else [
            f"data_root {self.data_root!r} does not exist; point it at a SIB-200 tree"]


def load_config(path=None, overrides=None) -> ToyConfig:
    raw = load_with_method_overrides(path, overrides, ToyConfig.method)
    return ToyConfig.from_dict(raw, source=str(path or "config"))


# 2. train_and_evaluate: core.pipeline's run with the toy's Steps.
def train_and_evaluate(config: ToyConfig, results_root=None):
    return pipeline.train_and_evaluate(config, results_root, STEPS)


@dataclass
class Built:
    model: Any
    labels: list[str]
    counts: dict[str, Any]
    method: dict[str, Any]      # core.methods.description: what the library received


@dataclass
class Prepared:
    device: str
    precision: str
    tokenizer: Any
    built: Built
    rows: dict[str, list[dict]]


def build(config: ToyConfig) -> Built:
    """The model with the run's registry method applied (core.modeling.apply_method)."""
    from transformers import AutoModelForSequenceClassification

    from peft_utils.core.modeling import apply_method, count_parameters, load_pretrained
    from peft_utils.data import registry

    labels = list(registry.get("sib200").task().labels)
    model = load_pretrained(AutoModelForSequenceClassification, config.model,
                            num_labels=len(labels))
    head = {id(p) for p in model.classifier.parameters()}
    base = {id(p) for p in model.parameters()} - head
    entry = methods.get(config.method)
    library = None if entry.library == "project" else methods.library_config(
        entry, {}, model.config.model_type, "classification")
    model = apply_method(model, entry, library, ADAPTER)
    if entry.library != "peft":   # every method trains the head (peft: modules_to_save)
        for param in model.classifier.parameters():
            param.requires_grad = True
    return Built(model, labels, count_parameters(model, base, head),
                 methods.description(entry, {}, model.config.model_type))


def rows_of(config: ToyConfig, tokenizer, labels: list[str], split: str) -> list[dict]:
    from peft_utils.data import registry

    frame = registry.get("sib200").load(config.data_root, split, ["en"])
    enc = tokenizer(list(frame["text"]), truncation=True, max_length=config.max_length)
    return [{"input_ids": ids, "attention_mask": mask, "labels": labels.index(gold[0])}
            for ids, mask, gold in zip(enc["input_ids"], enc["attention_mask"],
                                       frame["labels"])]


def _prepare(config: ToyConfig) -> Prepared:
    from transformers import AutoTokenizer

    from peft_utils.core.devices import prepare_device
    from peft_utils.core.modeling import seed_everything

    device, precision = prepare_device(config)
    seed_everything(config.seed)
    built, tokenizer = build(config), AutoTokenizer.from_pretrained(config.model)
    rows = {split: rows_of(config, tokenizer, built.labels, split)
            for split in ("train", "dev", "test")}
    return Prepared(device, precision, tokenizer, built, rows)


def _accuracy(prediction) -> dict[str, float]:
    return {"main": float((prediction.predictions.argmax(-1) == prediction.label_ids).mean())}


def _fit(config: ToyConfig, out: Path, prep: Prepared):
    from transformers import DataCollatorWithPadding

    from peft_utils.core.trainer import training_arguments

    args = training_arguments(config, out, prep.device, prep.precision, True,
                              len(prep.rows["train"]))
    return pipeline.fit(config, out, prep.built.model, "classification", {}, args=args,
                        train_dataset=prep.rows["train"], eval_dataset=prep.rows["dev"],
                        compute_metrics=_accuracy,
                        data_collator=DataCollatorWithPadding(prep.tokenizer))


def logits(model, rows: list[dict], batch_size: int, tokenizer) -> np.ndarray:
    import torch
    from transformers import DataCollatorWithPadding

    collate, device, out = DataCollatorWithPadding(tokenizer), model.device, []
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(rows), batch_size):
            batch = collate([{k: r[k] for k in ("input_ids", "attention_mask")}
                             for r in rows[start:start + batch_size]])
            out.append(model(**batch.to(device)).logits.float().cpu().numpy())
    return np.concatenate(out)


def _predict(config: ToyConfig, prep: Prepared, model, split: str) -> np.ndarray:
    return logits(model, prep.rows[split], config.eval_batch_size, prep.tokenizer)


def _score(config: ToyConfig, out: Path, prep: Prepared, passes) -> dict[str, Any]:
    from peft_utils.core.runs import atomic_write_text

    scores = {}
    for split, done in passes.items():
        pred = done.outputs.argmax(-1)
        gold = np.asarray([row["labels"] for row in prep.rows[split]])
        scores[split] = {"accuracy": float((pred == gold).mean()), "n": int(len(gold))}
        atomic_write_text(out / "predictions" / f"{split}.txt",
                          "".join(f"{prep.built.labels[i]}\\n" for i in pred))
    return scores


def subject(config: ToyConfig, model, tokenizer, rows: list[dict]):
    from peft_utils.core.serving import Subject

    return Subject(model, methods.get(config.method), ADAPTER,
                   lambda m, part, size: logits(m, list(part), size, tokenizer),
                   lambda a, b: float(np.abs(a - b).max()), rows, config.eval_batch_size)


def _serving_subject(config: ToyConfig, prep: Prepared, model, split: str):
    return subject(config, model, prep.tokenizer, prep.rows[split])


def _record(run) -> RecordParts:
    prep, rows = run.prep, run.prep.rows["train"]
    costs = run.fitted.costs(len(rows), sum(len(r["input_ids"]) for r in rows), prep.device)
    return RecordParts(scoring={"main_metric": "accuracy"}, metrics=dict(run.evaluation),
                       costs={**prep.built.counts, **costs, "checkpoint_mb": run.checkpoint_mb},
                       meta={})


STEPS = Steps(prepare=_prepare, fit=_fit, predict=_predict, score=_score,
              serving_subject=_serving_subject, record=_record)


def load_serving_subject(directory):
    """A finished run's model for core.serving (`bench-inference`), on its test rows."""
    from transformers import AutoTokenizer

    config, built = pipeline.load_trained(directory, ToyConfig, build)
    tokenizer = AutoTokenizer.from_pretrained(config.model)
    return subject(config, built.model, tokenizer,
                   rows_of(config, tokenizer, built.labels, "test"))


# 4. The Study value.
def notebook_parameters(config: ToyConfig) -> dict[str, Any]:
    values = config.to_dict()
    return {"config_file": None, "overrides": values, "results_dir": values.pop("results_dir")}


def preflight(config: ToyConfig):
    from peft_utils.data import registry

    def english() -> list[str]:
        registry.get("sib200").load(config.data_root, "train", ["en"], strict=True)
        return []

    return [(("data", config.data_root), english)]


def selection_score(record: dict) -> float | None:
    return ((record.get("metrics") or {}).get("dev") or {}).get("accuracy")


STUDY = Study("toy", ToyConfig, load_config, HERE / "toy_train.ipynb", notebook_parameters,
              preflight, train_and_evaluate, selection_score, load_serving_subject,
              leading_keys=("method", "seed"), path_keys=("data_root", "results_dir"))
'''

# The toy's record schema: what every record has, and the toy's scores.
TOY_SCHEMA = {
    "type": "object", "required": ["schema_version", "kind", "status", "run_info", "meta"],
    "properties": {
        "kind": {"const": "toy"},
        "status": {"enum": ["complete", "failed"]},
        "run_info": {"type": "object", "required": ["run_id", "kind", "method", "seed"]},
        "metrics": {"type": "object", "required": ["main_metric", "dev"],   # a trial: no test
                    "properties": {split: {"type": "object", "required": ["accuracy", "n"]}
                                   for split in ("dev", "test")}},
    }}

# 3. The training notebook: a tagged parameters cell, then a call of train_and_evaluate.
TOY_CELLS = [
    ("markdown", "# Train and evaluate one toy run", None),
    ("code", 'config_file = None  # a toy preset\noverrides = {}      # any ToyConfig keys\n'
             'results_dir = "results"', ["parameters"]),
    ("code", "from toy_study import load_config, train_and_evaluate\n\n"
             "config = load_config(config_file, {**overrides, 'results_dir': results_dir})\n"
             "result = train_and_evaluate(config)\n"
             "print(result.record['metrics']['test'])", None),
]


def make_toy_study(folder: Path) -> Path:
    """toy_study.py, its schema and notebook (package data) and its distribution metadata, as
    `pip install` of a package whose pyproject.toml has `[project.entry-points.
    "peft_utils.studies"] toy = "toy_study:STUDY"` would leave them."""
    import nbformat

    install_fake_package(folder, "toy_study", TOY_STUDY, "peft_utils.studies",
                         {"toy": "toy_study:STUDY"})
    (folder / "toy_record.json").write_text(json.dumps(TOY_SCHEMA, indent=1))
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                       "language": "python"}
    for kind, source, tags in TOY_CELLS:
        cell = (nbformat.v4.new_code_cell if kind == "code" else nbformat.v4.new_markdown_cell)(
            source)
        if tags:
            cell.metadata["tags"] = tags
        notebook.cells.append(cell)
    nbformat.write(notebook, folder / "toy_train.ipynb")
    return folder


@pytest.mark.slow
def test_recipe_add_a_study_runs_a_grid_of_its_own_kind(tmp_path, sib_root, tiny_model,
                                                        monkeypatch):
    from peft_utils.core.study import registered, study

    plugins = make_toy_study(tmp_path / "plugins")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(plugins), os.environ.get("PYTHONPATH", "")]))
    # 4. Found through its entry point, in this process (once its folder is importable)...
    monkeypatch.syspath_prepend(str(plugins))
    registered.cache_clear()
    try:
        toy = study("toy")
        assert toy.config_class.__name__ == "ToyConfig" and toy.notebook.is_file()
    finally:
        registered.cache_clear()

    # 5. ... and in every process of a grid that names it with `kind: toy`, tuned on dev.
    write_yaml(tmp_path / "configs" / "toy.yaml", {
        "data_root": str(sib_root), "model": str(tiny_model), "max_steps": 4, "eval_steps": 2,
        "checkpoint_steps": 0})
    grid = write_yaml(tmp_path / "configs" / "g.yaml", {
        "kind": "toy", "presets": ["toy.yaml"], "grid": {"method": ["fft", "lora"], "seed": [1]},
        "tune": {"trials": 2, "seeds": [1],
                 "space": {"learning_rate": {"range": "registry", "scale": 30}}}})
    plan = cli("grid", "run", str(grid), "--dry-run", "--json", cwd=tmp_path)
    assert plan.returncode == 0, plan.stderr
    assert {cell["task"] for cell in json.loads(plan.stdout)} == {"toy"}
    out = cli("grid", "run", str(grid), "--workers", "2", cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    done = records(tmp_path / "results")
    assert len(done) == 6
    assert {r["kind"] for r in done} == {"toy"} and {r["status"] for r in done} == {"complete"}
    assert {r["run_info"]["kind"] for r in done} == {"toy"}
    finals = [r for r in done if r["run_info"]["tuning"]["stage"] == "final"]
    assert sorted(r["run_info"]["method"] for r in finals) == ["fft", "lora"]
    for record in finals:   # scored, costed, served and recorded like any study's run
        run = tmp_path / "results" / record["run_info"]["run_id"]
        assert record["metrics"]["test"]["n"] == 21 and record["metrics"]["best_step"]
        assert record["costs"]["method_params"] > 0 and record["inference"]["rows"] == 21
        assert record["meta"]["method"]["name"] == record["run_info"]["method"]
        assert (run / "toy_train.ipynb").is_file() and (run / "predictions" / "test.txt").is_file()
    # 4. What the Study's `train` and `serving_subject` are for: `rerun` trains a recorded run
    # again from its record, `bench-inference` reloads finished runs to time them.
    lora = next(r for r in finals if r["run_info"]["method"] == "lora")["run_info"]["run_id"]
    again = cli("rerun", str(tmp_path / "results" / lora), "--results",
                str(tmp_path / "rerun"), cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    bench = cli("bench-inference", str(tmp_path / "results"), "--rounds", "1", cwd=tmp_path)
    assert bench.returncode == 0, bench.stdout + bench.stderr
    timed = json.loads((tmp_path / "results" / "inference-bench.json").read_text())["runs"]
    assert sorted(e["method"] for e in timed.values()) == ["fft", "lora"]


# ---- Add a report table: computed from `load_results`, registered in TABLES, captioned -----
def dev_test_gap(results):
    """1. Test minus dev on the main metric (all languages), mean over seeds, per task,
    scenario and method; the display version formatted beside it."""
    import pandas as pd

    rows = []
    for run in results.runs.itertuples():
        metrics = results.records[run.run_id]["metrics"]
        main = metrics["main_metric"]
        rows.append({"task": run.task, "scenario": run.scenario, "method": run.method,
                     "gap": metrics["test"]["overall"][main] - metrics["dev"]["overall"][main]})
    numeric = pd.DataFrame(rows).groupby(["task", "scenario", "method"], sort=False,
                                         as_index=False)["gap"].mean()
    return numeric, numeric.assign(gap=numeric["gap"].map("{:+.3f}".format))


def test_recipe_add_a_report_table_is_written_three_ways_and_kept(monkeypatch, tmp_path):
    from peft_utils.classification.analysis import load_results
    from peft_utils.classification.analysis import report as R
    from peft_utils.data.labels import SIB200_LABELS
    from test_analysis import examples_table, sib_examples, write_run

    # Fixture records (scored from their predictions, as training does): every run right on
    # dev; on test fft is right again, LoRA always wrong.
    gold, langs = sib_examples(np.random.default_rng(0), n_per_lang=10)
    wrong = [SIB200_LABELS[(SIB200_LABELS.index(g) + 1) % len(SIB200_LABELS)] for g in gold]
    for method, test in (("fft", gold), ("lora", wrong)):
        for seed in (1, 2):
            write_run(tmp_path / "results", method, seed, examples={
                "dev": examples_table(gold, gold, langs),
                "test": examples_table(gold, test, langs)})
    numeric, display = dev_test_gap(load_results(tmp_path / "results"))
    assert numeric.set_index("method")["gap"].to_dict() == {"fft": 0.0, "lora": -1.0}

    # 2-3. Registered in TABLES, with a caption in CAPTIONS: write_report adds it.
    monkeypatch.setitem(R.TABLES, "dev_test_gap", dev_test_gap)
    caption = "Test minus dev on the main metric, mean over seeds."
    monkeypatch.setitem(R.CAPTIONS, "dev_test_gap", caption)
    report = R.write_report(tmp_path / "results", tmp_path / "tables", tmp_path / "figures",
                            n_boot=20)
    assert report.tables["dev_test_gap"].equals(numeric)
    assert report.display["dev_test_gap"].equals(display)
    tables = tmp_path / "tables"
    assert {p for p in report.files if p.stem == "dev_test_gap"} == {
        tables / f"dev_test_gap.{ext}" for ext in ("csv", "md", "tex")}
    import pandas as pd

    written = pd.read_csv(tables / "dev_test_gap.csv")   # numeric
    assert written["gap"].tolist() == [0.0, -1.0]
    for ext in ("md", "tex"):                            # formatted, captioned
        text = (tables / f"dev_test_gap.{ext}").read_text()
        assert caption in text and "+0.000" in text and "-1.000" in text
    # 4. What the analysis notebook's display(report.display["dev_test_gap"]) renders.
    assert "-1.000" in report.display["dev_test_gap"].to_html()
