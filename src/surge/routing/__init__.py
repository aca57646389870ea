"""Route matching (pure): the table built from `routes:` and the path rewrite it implies."""

from surge.routing.table import Route, RouteTable, normalize_host, strip

__all__ = ["Route", "RouteTable", "normalize_host", "strip"]
