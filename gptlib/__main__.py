"""``python -m gptlib``: see `gptlib.cli`."""

import os
import signal
import sys

from gptlib.cli import main

if sys.stdout is not None:  # a stdout that is not UTF-8 gets "?" for what it cannot encode
    sys.stdout.reconfigure(errors="replace")
# SIGHUP and SIGTERM end the command as Ctrl-C does; not under torchrun, which sends SIGTERM when one fails
for name in ("SIGTERM", "SIGHUP"):
    if hasattr(signal, name) and "TORCHELASTIC_RUN_ID" not in os.environ:
        signal.signal(getattr(signal, name), signal.default_int_handler)
sys.exit(main())
