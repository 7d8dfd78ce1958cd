"""``python -m gptlib``: see `gptlib.cli`."""

import os
import signal
import sys

from gptlib.cli import main

if sys.stdout is not None:
    # A stream that is not UTF-8 (a Latin-1 locale, a Windows redirect, PYTHONIOENCODING=ascii) gets
    # "?" for what it cannot encode, so the text still reaches the reader and a finished run ends well.
    sys.stdout.reconfigure(errors="replace")
# A terminal closed (SIGHUP) or a job stopped (SIGTERM, what kill and schedulers send) ends the command
# as Ctrl-C does: one line, and a run says where its last checkpoint is and how to resume it. Under
# torchrun, which stops the other processes with SIGTERM when one fails, they end quietly as before.
for name in ("SIGTERM", "SIGHUP"):
    if hasattr(signal, name) and "TORCHELASTIC_RUN_ID" not in os.environ:
        signal.signal(getattr(signal, name), signal.default_int_handler)
sys.exit(main())
