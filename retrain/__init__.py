"""retrain-ci: retrain an image classifier on your own categories, and let CI guard it."""

import os

# TensorFlow's C++ start-up chatter (CUDA probing on CPU-only machines, oneDNN notices) drowns the tool's own output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

__version__ = "0.1.0"
