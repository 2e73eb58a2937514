"""Benchmarks run by hand against a running platform (``bin/run``); see bench/README.md."""
