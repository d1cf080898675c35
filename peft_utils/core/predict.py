"""`python -m peft_utils predict SOURCE --input PATH|- [--out PATH]`: a trained model's
outputs on new texts: a classifier's labels and scores, a translation model's translations.

SOURCE is a finished run's folder or an export of one (`python -m peft_utils export`); its
study (the run's record, the export's metadata) does the work (`Study.predict`). The input is
a CSV, TSV, JSONL or Parquet table with a text column (`--text-column`, default `text`) or,
with `-`, one text per line on stdin; the output is the input's rows with the model's columns
added, written atomically to `--out` (its format from the suffix) or printed as CSV.
"""
from __future__ import annotations

from pathlib import Path

from peft_utils.core.config import ConfigError
from peft_utils.core.export import finished_run, read_metadata
from peft_utils.core.study import Study, study, study_of_config


def study_of_source(source: str | Path) -> Study:
    """The study of a run folder (its record) or of an export (its metadata)."""
    meta = read_metadata(source)
    if meta is not None:
        return study(meta.get("study"))
    return study_of_config(finished_run(source)["run_info"])


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "predict", help="a trained model's outputs (labels, translations) on new texts",
        description=__doc__.split("\n\n")[0])
    parser.add_argument("source", help="a finished run's folder, or an export of one")
    parser.add_argument("--input", required=True,
                        help="a CSV, TSV, JSONL or Parquet table, - (lines on stdin), or "
                             "(classification) a folder in the layout of the run's data set "
                             "(SemEval: a release root or one language folder)")
    parser.add_argument("--out", default=None,
                        help="the table to write (default: stdout); with a folder as --input, "
                             "the folder to write one prediction file per language into")
    parser.add_argument("--text-column", default="text")
    parser.add_argument("--split", default="test",
                        help="with a data folder as --input: the split to read (default test)")
    parser.set_defaults(func=_command)


def _command(args) -> int:
    kind = study_of_source(args.source)
    if kind.predict is None:
        raise ConfigError(f"{args.source}: {kind.name} runs have no `predict` yet")
    return kind.predict(args)
