"""`python -m peft_utils rerun results/<run_id>`: train a recorded run again from its record
alone (run_info holds the full config) into a separate folder, and say whether the metrics
are identical. Any study's run: the record's run_info names the study (`kind`).

Exit status 0 when every metric is identical, 1 when any differs (each difference printed,
with the environment differences that may explain it), 2 when the run cannot be rerun.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from peft_utils.core.config import ConfigError, parse_overrides
from peft_utils.core.runs import RECORD, read_record
from peft_utils.core.study import Study, study_of_config

# Facts of the environment that can change numbers; reported next to differences.
ENVIRONMENT = ("git_commit", "device", "precision", "python", "packages")


def config_from_record(record: dict[str, Any], source: str = RECORD) -> tuple[Study, Any]:
    """(the study, the config) a record was made with: the config's own keys of run_info
    (the rest, such as the run id, is derived from them)."""
    info = record.get("run_info", {})
    kind = study_of_config(info)
    values = {k: v for k, v in info.items() if k in kind.keys}
    return kind, kind.config_class.from_dict(values, source=f"{source} run_info")


def relocatable(config) -> tuple[str, ...]:
    """What --set may change: where and how the run executes, and where its model folder lies
    (a moved folder keeps its run id; a different model is caught by the run id check)."""
    return (*config.non_identity, "model")


def differences(old: Any, new: Any, path: str = "metrics") -> list[str]:
    """Every leaf where `old` and `new` differ, as `path: old -> new` (exact comparison)."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in list(old) + [k for k in new if k not in old]:
            if key not in new:
                out.append(f"{path}.{key}: only in the record")
            elif key not in old:
                out.append(f"{path}.{key}: only in the rerun")
            else:
                out += differences(old[key], new[key], f"{path}.{key}")
        return out
    if isinstance(old, list) and isinstance(new, list):
        if len(old) != len(new):
            return [f"{path}: {len(old)} entries -> {len(new)}"]
        return [d for i, (a, b) in enumerate(zip(old, new))
                for d in differences(a, b, f"{path}[{i}]")]
    return [] if old == new else [f"{path}: {old!r} -> {new!r}"]


def rerun(run_folder: str | Path, results: str | Path | None = None,
          overrides: dict[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(recorded record, rerun record) of the run in `run_folder`."""
    folder = Path(run_folder).resolve()
    record = read_record(folder)
    if record.get("status") != "complete":
        raise ConfigError(f"{folder / RECORD}: status {record.get('status')!r}; only complete "
                          "runs have metrics to compare")
    overrides = overrides or {}
    kind, config = config_from_record(record, str(folder / RECORD))
    changed = sorted(set(overrides) - set(relocatable(config)))
    if changed:
        raise ConfigError(f"--set {', '.join(changed)}: these keys define the run; a rerun may "
                          f"only change where or how it runs ({', '.join(relocatable(config))})")
    target = Path(results) if results else folder.parent.with_name(folder.parent.name + "-rerun")
    if target.resolve() == folder.parent:
        raise ConfigError(f"--results {target}: that is the recorded run's own folder; rerun "
                          "into another one so the record is kept for comparison")
    config = config.replace(**overrides, results_dir=str(target.resolve()))
    recorded_id = record["run_info"].get("run_id")
    if config.run_id != recorded_id:
        raise ConfigError(f"{folder / RECORD}: the config now hashes to {config.run_id}, not "
                          f"{recorded_id} (the model folder's config.json or the config schema "
                          "changed); this is not the same run")
    return record, kind.train(config).record


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "rerun", help="train a recorded run again from its record and compare the metrics")
    parser.add_argument("run_folder", help="results/<run_id> (holding record.json)")
    parser.add_argument("--results", default=None,
                        help="where the rerun goes (default: <results folder>-rerun)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="change where or how it runs, e.g. --set data_root=/data/sib200")
    parser.set_defaults(func=_command)


def _command(args) -> int:
    old, new = rerun(args.run_folder, args.results, parse_overrides(args.set))
    diffs = differences(old.get("metrics", {}), new.get("metrics", {}))
    where = Path(new["run_info"]["results_dir"]) / new["run_info"]["run_id"]
    if not diffs:
        print(f"identical: every metric of {new['run_info']['run_id']} matches the record "
              f"(rerun in {where})")
        return 0
    print(f"different: {len(diffs)} metric value(s) of {new['run_info']['run_id']} differ "
          f"(record -> rerun in {where}):")
    for line in diffs:
        print(f"  {line}")
    env = [d for key in ENVIRONMENT for d in differences(old.get("meta", {}).get(key),
                                                         new.get("meta", {}).get(key),
                                                         f"meta.{key}")]
    if env:
        print("environment differences that can explain them:")
        for line in env:
            print(f"  {line}")
    sys.stdout.flush()
    return 1
