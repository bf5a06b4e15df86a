"""``python -m d2lcompat`` is the ``d2lcompat`` command."""

import sys

from ._cli import main

sys.exit(main())
