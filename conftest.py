"""Wires the eval suite's fixtures. The plugin itself is registered once, by its entry point."""

pytest_plugins = ["fixtures.dataset", "fixtures.replies"]
