"""The whole suite's shared fixtures: tiny trained-model checkpoints and image folders (tests/tiny_checkpoints.py),
and the figures a test saved (tests/saved_figures.py)."""

pytest_plugins = ("tiny_checkpoints", "saved_figures")
