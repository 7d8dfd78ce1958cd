"""``python -m gptlib``: see `gptlib.cli`."""

import sys

from gptlib.cli import main

sys.exit(main())
