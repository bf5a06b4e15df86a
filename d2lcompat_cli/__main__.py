"""``python -m d2lcompat_cli``: the ``d2lcompat`` command, exactly as the installed script
(no backend is imported before the command runs; ``python -m d2lcompat`` imports one)."""

import sys

from d2lcompat_cli import main

sys.exit(main())
