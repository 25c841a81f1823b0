"""`python -m chat …` — the same as `herd chat …`."""

import sys

from herd.cli import main

raise SystemExit(main(["chat", *sys.argv[1:]]))
