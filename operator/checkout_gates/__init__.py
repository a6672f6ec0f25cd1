"""checkout-gates: gated exposure rollouts for checkout and payment services."""

__version__ = "0.1.0"
