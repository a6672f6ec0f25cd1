"""The checkout-gates lab: a real local testbed, a simulated checkout service and the demo.

For development, the demo and CI only: the operator's wheel and image contain none of it, and the
product never imports it. Its commands (`demo`, `simulate`) join `checkout-gates` through the
``checkout_gates.commands`` entry-point group.
"""
