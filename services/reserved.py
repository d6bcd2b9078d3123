"""Entry points reserved for daemons that later work fills in: ``--help`` and ``--version`` work,
running one says plainly that it does not exist yet and exits 69 (EX_UNAVAILABLE) so no
supervisor mistakes it for a running daemon."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import NoReturn

from shared.runtime import build_parser
from shared.settings import Settings

EXIT_UNAVAILABLE = 69


def reserved_main(prog: str, description: str, argv: Sequence[str] | None = None) -> NoReturn:
    parser = build_parser(prog, f"{description} (Not implemented yet.)", Settings)
    parser.parse_known_args(argv)
    print(f"{prog}: not implemented yet", file=sys.stderr)
    sys.exit(EXIT_UNAVAILABLE)
