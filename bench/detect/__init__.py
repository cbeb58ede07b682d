"""Detection benchmark: see README.md here; run with `python -m bench.detect`."""
