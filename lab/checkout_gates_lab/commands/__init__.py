"""The lab's sub-commands of ``checkout-gates``, registered through the ``checkout_gates.commands`` entry points."""
