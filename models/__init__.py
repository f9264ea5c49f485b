"""Shared vocabulary of taskyard: tables, phases, quantities, settings and request/response shapes.

Both `api/` and `controller/` import from here; this package imports neither of them.
"""
