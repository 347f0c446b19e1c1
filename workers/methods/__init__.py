"""Attribution methods, one module per family; importing this package registers them all."""

from workers.methods import gradient, internals  # noqa: F401
from workers.methods.base import METHODS, AttributionMethod, build_method, register_method

__all__ = ["METHODS", "AttributionMethod", "build_method", "register_method"]
