"""`python -m peft_utils mt train|budget|splits|tiny-model`."""
from __future__ import annotations

import json


def register(subparsers) -> None:
    mt = subparsers.add_parser("mt", help="the machine-translation study (PEFT vs FFT for MT)")
    sub = mt.add_subparsers(dest="mt_command", required=True)

    train = sub.add_parser("train", help="train and evaluate one MT configuration")
    train.add_argument("--config", help="MT preset YAML (e.g. configs/mt/presets/mbart50.yaml)")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    train.add_argument("--results", help="results folder (default: the config's, results-mt)")
    train.set_defaults(func=_train)

    budget = sub.add_parser("budget", help="method sizes that hit parameter budgets (no weights)")
    budget.add_argument("--model", help="hub name or local folder (default: the config's)")
    budget.add_argument("--config", help="MT preset YAML")
    budget.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    budget.add_argument("--budgets", type=float, nargs="+", default=[0.001, 0.01, 0.1],
                        help="fractions of the model's parameters (default 0.001 0.01 0.1)")
    budget.add_argument("--methods", nargs="+", help="default: every method")
    budget.add_argument("--json", action="store_true")
    budget.set_defaults(func=_budget)

    splits = sub.add_parser("splits", help="document-level train/dev/test split of a parallel "
                            "data set (default NTREX)")
    splits.add_argument("--dataset", default="ntrex",
                        help="a parallel data set: ntrex, parallel-table, or a plugin's")
    splits.add_argument("--data-root", default="data/ntrex")
    splits.add_argument("--src-lang", default="en")
    splits.add_argument("--tgt-lang", default="de")
    splits.add_argument("--dev-fraction", type=float, default=0.05)
    splits.add_argument("--test-fraction", type=float, default=0.15)
    splits.add_argument("--split-seed", type=int, default=0)
    splits.add_argument("--json", action="store_true")
    splits.set_defaults(func=_splits)

    tiny = sub.add_parser("tiny-model", help="build a tiny random mBART (smoke runs, no hub)")
    tiny.add_argument("out", help="model folder to write, e.g. models/tiny-mt")
    tiny.add_argument("--data-root", default="data/ntrex")
    tiny.add_argument("--langs", nargs="+", default=["de", "ka"],
                      help="target languages whose NTREX text enters the vocabulary")
    tiny.set_defaults(func=_tiny)


def _config(args):
    from peft_utils.core.config import parse_overrides
    from peft_utils.mt.config import load_mt_config

    overrides = parse_overrides(args.set)
    if getattr(args, "model", None):
        overrides["model"] = args.model
    return load_mt_config(args.config, overrides)


def _train(args) -> int:
    from peft_utils.mt.training import train_command

    return train_command(args)


def _budget(args) -> int:
    from peft_utils.mt.models import budget_table

    config = _config(args)
    rows = budget_table(config, args.budgets, args.methods)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{config.model}: base parameters {next((r['base'] for r in rows if 'base' in r), 0):,}")
    print(f"{'method':<11} {'budget':>8} {'size':>22} {'trainable':>13} {'reached':>9} "
          f"{'error':>7}")
    for row in rows:
        target = "-" if row["target"] is None else f"{row['target']:.2%}"
        if row.get("error"):
            print(f"{row['method']:<11} {target:>8}  unreachable: {row['error']}")
            continue
        size = f"{row['knob']}={row['value']}" if row["knob"] else "(fixed)"
        error = "-" if row["relative_error"] is None else f"{row['relative_error']:.1%}"
        print(f"{row['method']:<11} {target:>8} {size:>22} {row['trainable']:>13,} "
              f"{row['fraction']:>9.3%} {error:>7}")
    return 0


def _splits(args) -> int:
    from peft_utils.mt.data import load_splits, split_summary

    splits = load_splits(args.data_root, args.tgt_lang, args.src_lang, args.dev_fraction,
                         args.test_fraction, args.split_seed, dataset=args.dataset)
    summary = split_summary(splits)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        for name, counts in summary.items():
            print(f"{name:>5}: {counts['sentences']:>5} sentences in "
                  f"{counts['documents']:>3} documents")
    return 0


def _tiny(args) -> int:
    from peft_utils.mt.testing import make_tiny_mt_model, ntrex_texts

    path = make_tiny_mt_model(args.out, ntrex_texts(args.data_root, args.langs))
    print(path)
    return 0
