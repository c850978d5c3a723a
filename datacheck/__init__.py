"""Dataset audit for image-folder datasets (``retrain-ci check``); shares listing and splits with ``retrain``."""
