"""pytest set-up shared by the unit tests and `pytest --nbval`.

Notebooks read ``GPTLIB_PRESET`` (through `gptlib.presets.choose`) to choose their size; under the
tests every notebook runs the seconds-long ``smoke`` preset. They record their ladder rungs into
``$GPTLIB_RESULTS``; under the tests that is a scratch folder, removed at the end, so a test run never
touches a learner's results (runs/) or the book's committed ones (book/results/). The notebook kernels
inherit this process's environment, so setting it here reaches them.
"""

import atexit
import os
import shutil
import tempfile

os.environ.setdefault("GPTLIB_PRESET", "smoke")
# Always a scratch folder, even if the shell points GPTLIB_RESULTS at the book's results.
os.environ["GPTLIB_RESULTS"] = _RESULTS = tempfile.mkdtemp(prefix="gptlib-test-results-")
atexit.register(shutil.rmtree, _RESULTS, ignore_errors=True)
# The notebooks' training runs (chapter 7's checkpoints) go to a scratch folder too, never runs/.
os.environ["GPTLIB_RUNS"] = _RUNS = tempfile.mkdtemp(prefix="gptlib-test-runs-")
atexit.register(shutil.rmtree, _RUNS, ignore_errors=True)
# The tests' models are tiny: one thread is faster than several (no synchronisation), and it keeps
# the kernels of `pytest --nbval` from fighting over the cores. Set before torch is imported.
os.environ.setdefault("OMP_NUM_THREADS", "1")
