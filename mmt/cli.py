"""The `mmt` command line: argparse -> library calls. The only place argparse lives.

Each subcommand has its own section: `_add_<name>(sub)` builds its parser and
`_cmd_<name>(args)` runs it, importing what it needs so `mmt --help` stays fast.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


class CommandError(Exception):
    """A user-facing failure: printed as `mmt <command>: error: <message>`, exit status 2."""


# ============================================================================ encode
def _add_encode(sub) -> None:
    p = sub.add_parser("encode", help="encode a MIDI/MusicXML/kern/abc file and write its rows as CSV")
    p.add_argument("file")
    p.add_argument("--out", help="CSV path (default: beside the input)")
    p.add_argument("--encoding", help="encoding.json (default: the default encoding)")
    p.set_defaults(func=_cmd_encode)


def _cmd_encode(args: argparse.Namespace) -> int:
    from mmt.encoding import Encoding, encode
    from mmt.io import read_music, write_csv

    encoding = Encoding.load(args.encoding) if args.encoding else Encoding()
    codes = encode(read_music(args.file), encoding)
    out = Path(args.out) if args.out else Path(args.file).with_suffix(".csv")
    write_csv(out, codes, encoding)
    print(f"{args.file}: {len(codes)} rows -> {out}")
    return 0


# ============================================================================ parser
SECTIONS = [_add_encode]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mmt", description="Multitrack symbolic music generation and analysis with token tuples."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in SECTIONS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (CommandError, FileNotFoundError, ValueError) as error:
        print(f"mmt {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"mmt {args.command}: interrupted", file=sys.stderr)
        return 130
