"""Benchmarks of checkout-gates against the yardsticks in DESIGN.md (run them with ``python -m bench.<name>``)."""
