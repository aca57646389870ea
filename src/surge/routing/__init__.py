"""CompiledRoute matching (pure): the table built from `routes:` and the path rewrite it implies."""

from surge.routing.table import CompiledRoute, RouteTable, normalize_host, strip

__all__ = ["CompiledRoute", "RouteTable", "normalize_host", "strip"]
