"""Traffic routers: Gateway API HTTPRoute, Istio VirtualService, ingress-nginx canary, replica ratio."""

from checkout_gates.routing.base import RouteNotFoundError, Router, RoutingError
from checkout_gates.routing.factory import make_router

__all__ = ["RouteNotFoundError", "Router", "RoutingError", "make_router"]
