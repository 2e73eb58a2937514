"""Carts, orders and the checkout saga (the ``order`` service)."""
