"""``python -m d2lcompat._cli``: the ``d2lcompat`` command (see `d2lcompat_cli`)."""

import sys

from d2lcompat_cli import build_parser, main

__all__ = ["build_parser", "main"]

if __name__ == "__main__":
    sys.exit(main())
