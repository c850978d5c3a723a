"""The application layer: the jobs both front ends run (the CLI and the pytest plugin).

A job resolves its settings (``retrain.core.settings_file``), reads and checks its baselines, chooses where the work
runs, calls an engine (the audit in ``datacheck``, training in ``retrain.training``) and returns the engine's typed
report; the front ends only turn options into settings and reports into lines, exit codes and test items.
"""
