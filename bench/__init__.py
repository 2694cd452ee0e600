"""Benchmarks of the credit ledger (not tests): run them with ``python -m bench.<name>``."""
