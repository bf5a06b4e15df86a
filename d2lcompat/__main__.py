"""``python -m d2lcompat`` is the ``d2lcompat`` command (it imports the chosen backend first;
the installed ``d2lcompat`` script does not, see `d2lcompat_cli`)."""

import sys

from d2lcompat_cli import main

sys.exit(main())
