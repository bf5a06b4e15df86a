"""Benchmarks: d2lcompat against the native framework (``python -m benchmarks.run``)."""
