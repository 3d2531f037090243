"""``python -m threatshare``: the same as the ``threatshare`` command."""

import sys

from threatshare.cli import main

sys.exit(main())
