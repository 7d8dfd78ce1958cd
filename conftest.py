"""pytest set-up shared by the unit tests and `pytest --nbval`.

Notebooks read ``GPTLIB_PRESET`` (through `gptlib.presets.auto_preset`) to choose their size; under
the tests every notebook runs the seconds-long ``smoke`` preset. The notebook kernels inherit this
process's environment, so setting it here reaches them.
"""

import os

os.environ.setdefault("GPTLIB_PRESET", "smoke")
# The tests' models are tiny: one thread is faster than several (no synchronisation), and it keeps
# the kernels of `pytest --nbval` from fighting over the cores. Set before torch is imported.
os.environ.setdefault("OMP_NUM_THREADS", "1")
