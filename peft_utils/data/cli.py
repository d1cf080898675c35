"""`python -m peft_utils data ...`: inspect and fetch data sets."""
from __future__ import annotations

import argparse
import json


def register(subparsers) -> None:
    data = subparsers.add_parser("data", help="inspect and fetch data sets")
    sub = data.add_subparsers(dest="data_command", required=True)

    summary = sub.add_parser("summary", help="load a split and print what was read and kept")
    summary.add_argument("--dataset", required=True, choices=("semeval2023", "sib200", "brighter"))
    summary.add_argument("--root", required=True, help="data folder (e.g. data/sib200)")
    summary.add_argument("--subtask", type=int, choices=(1, 2, 3), help="semeval2023 only")
    summary.add_argument("--split", default="train", choices=("train", "dev", "test"))
    summary.add_argument("--langs", nargs="+", help="folder or ISO codes (default: all present)")
    summary.add_argument("--strict", action="store_true",
                         help="raise on rows that would be excluded instead of reporting them")
    summary.add_argument("--json", action="store_true", help="print the summary as JSON")
    summary.set_defaults(func=_summary, _parser=summary)

    prepare = sub.add_parser("prepare", help="copy (or download) a demo data set into data/")
    prepare.add_argument("name", choices=("sib200", "brighter", "ntrex"))
    prepare.add_argument("--mirror", help="local copy to use (default ../shared/data/<name>)")
    prepare.add_argument("--dest", default="data", help="destination root (default data)")
    prepare.set_defaults(func=_prepare)

    imbalance = sub.add_parser("imbalance", help="an imbalanced SIB-200 tree skewed like "
                               "SemEval subtask 1 (76/19/5%% over three topics per language)")
    imbalance.add_argument("--src", default="data/sib200", help="SIB-200 tree (default data/sib200)")
    imbalance.add_argument("--out", default="data/sib200-imbalanced",
                           help="destination (default data/sib200-imbalanced)")
    imbalance.set_defaults(func=_imbalance)


def _summary(args: argparse.Namespace) -> int:
    from peft_utils.data.scenarios import load_split
    from peft_utils.data.summary import format_table

    if args.dataset == "semeval2023" and args.subtask is None:
        args._parser.error("--subtask 1, 2 or 3 is required for --dataset semeval2023")
    df = load_split(args.dataset, args.root, args.split, langs=args.langs,
                    subtask=args.subtask, strict=args.strict)
    summary = {"dataset": args.dataset, "subtask": args.subtask, "split": args.split,
               **df.attrs["summary"]}
    if args.json:
        print(json.dumps(summary, indent=2, ensure_ascii=False))
    else:
        print(f"{args.dataset} {args.split}" + (f" subtask {args.subtask}" if args.subtask else ""))
        print(format_table(summary))
    return 0


def _prepare(args: argparse.Namespace) -> int:
    from peft_utils.data.prepare import prepare

    print(prepare(args.name, dest_root=args.dest, mirror=args.mirror))
    return 0


def _imbalance(args: argparse.Namespace) -> int:
    from peft_utils.data.imbalanced import make_imbalanced_sib200

    print(make_imbalanced_sib200(args.src, args.out))
    return 0
