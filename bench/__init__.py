"""The benchmarks (docs/design.md#performance) of threatshare, on loopback emulators: ``python -m
bench``.

Each measurement lives in its own module and returns a JSON-able dict; :mod:`bench.__main__`
runs them and prints one report. Sizes are flags (``--quick`` for a smoke run); nothing leaves
127.0.0.1.
"""
