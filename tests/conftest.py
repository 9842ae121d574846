"""The whole suite's shared fixtures: tiny trained-model checkpoints and image folders (tests/tiny_checkpoints.py)."""

pytest_plugins = ("tiny_checkpoints",)
