"""``python -m retrain``: the command line, as ``retrain-ci``."""

import os
import sys

# ``python -m`` puts the working folder first on sys.path. Run from /tmp, the tutorial's cache folder /tmp/bottleneck
# would pass for pandas' optional `bottleneck` package and break its import; retrain itself is imported by now.
if sys.path and sys.path[0] in ("", os.getcwd()) and not os.path.isdir(os.path.join(sys.path[0] or ".", "retrain")):
    del sys.path[0]

from retrain.cli import app  # noqa: E402

app(prog_name="retrain-ci")
