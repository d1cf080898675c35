"""`python -m peft_utils data ...`: inspect and fetch data sets."""
from __future__ import annotations

import argparse
import json


def register(subparsers) -> None:
    data = subparsers.add_parser("data", help="inspect and fetch data sets")
    sub = data.add_subparsers(dest="data_command", required=True)

    from peft_utils.data.prepare import manifest_names
    from peft_utils.data.registry import names

    listing = sub.add_parser("list", help="the data set registry: languages, tasks, labels, "
                             "and the sizes of what is present under the data root")
    listing.add_argument("--data-root", default="data",
                         help="where the built-in sets lie, as <data-root>/<name> (default data)")
    listing.add_argument("--table", action="append", default=[], metavar="FOLDER",
                         help="also list the table data set in FOLDER (repeatable)")
    listing.add_argument("--json", action="store_true", help="print the registry as JSON")
    listing.set_defaults(func=_list)

    summary = sub.add_parser("summary", help="load a split and print what was read and kept")
    summary.add_argument("--dataset", required=True, choices=names())
    summary.add_argument("--root", required=True, help="data folder (e.g. data/sib200)")
    summary.add_argument("--subtask", type=int, help="the task, for data sets with several "
                         "(semeval2023: 1, 2 or 3)")
    summary.add_argument("--split", default="train", choices=("train", "dev", "test"))
    summary.add_argument("--langs", nargs="+", help="folder or ISO codes (default: all present)")
    summary.add_argument("--strict", action="store_true",
                         help="raise on rows that would be excluded instead of reporting them")
    summary.add_argument("--json", action="store_true", help="print the summary as JSON")
    summary.set_defaults(func=_summary, _parser=summary)

    prepare = sub.add_parser("prepare", help="copy (or download) a demo data set into data/")
    prepare.add_argument("name", choices=manifest_names())
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

    from peft_utils.data.registry import get

    try:
        get(args.dataset, args.root).task(args.subtask)
    except ValueError as err:
        args._parser.error(str(err))
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


def _list(args: argparse.Namespace) -> int:
    from peft_utils.data.catalog import catalog, format_catalog

    entries = catalog(args.data_root, args.table)
    print(json.dumps(entries, indent=2, ensure_ascii=False) if args.json
          else format_catalog(entries))
    return 0


def _prepare(args: argparse.Namespace) -> int:
    from peft_utils.data.prepare import prepare

    print(prepare(args.name, dest_root=args.dest, mirror=args.mirror))
    return 0


def _imbalance(args: argparse.Namespace) -> int:
    from peft_utils.data.imbalanced import make_imbalanced_sib200

    print(make_imbalanced_sib200(args.src, args.out))
    return 0
