"""Helpers for integration tests: real upstream replicas (`upstream_app`, `processes`), the
gateway as a real process (`processes.start_gateway`), a steady-load client (`load`) and pytest
fixtures over them (`fixtures`). Importable from any test as `support.*`."""
