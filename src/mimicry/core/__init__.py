"""The pure core: reply parsing, behavior detectors, statistics and reports.

Nothing under this package imports pytest or ollama (a test proves it), so it can be reused
by the plugin, the `python -m mimicry` command and other tools alike.
"""
