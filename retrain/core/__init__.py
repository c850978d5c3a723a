"""The core: datasets and splits, decoding, the bottleneck cache, settings, results and errors. No TensorFlow here."""
