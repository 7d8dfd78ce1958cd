"""``python -m gptlib``: see `gptlib.cli`."""

import sys

from gptlib.cli import main

if sys.stdout is not None:
    # A stream that is not UTF-8 (a Latin-1 locale, a Windows redirect, PYTHONIOENCODING=ascii) gets
    # "?" for what it cannot encode, so the text still reaches the reader and a finished run ends well.
    sys.stdout.reconfigure(errors="replace")
sys.exit(main())
