"""pytest set-up shared by the unit tests and `pytest --nbval`.

Notebooks read ``GPTLIB_PRESET`` (through `gptlib.presets.auto_preset`) to choose their size; under
the tests every notebook runs the seconds-long ``smoke`` preset. The notebook kernels inherit this
process's environment, so setting it here reaches them.
"""

import os

os.environ.setdefault("GPTLIB_PRESET", "smoke")
