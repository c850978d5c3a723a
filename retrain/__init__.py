"""retrain-ci: retrain an image classifier on your own categories, and let CI guard it."""

import os

# TensorFlow's C++ start-up chatter (CUDA probing on CPU-only machines, oneDNN notices) drowns the tool's own output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def __getattr__(name: str) -> str:
    """``retrain.__version__``, read from the installed package's metadata (pyproject.toml is its one source) when
    asked: ``importlib.metadata`` would add 25 ms to every start of the command line."""
    if name != "__version__":
        raise AttributeError(f"module 'retrain' has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("retrain-ci")
    except PackageNotFoundError:  # a source tree on PYTHONPATH, never pip-installed
        return "unknown (not installed)"
