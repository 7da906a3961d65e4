"""Subscribers that keep or show what a query did: trace files (``trace_file``) and their HTML page (``trace_viewer``).

Both read only ``deeprecall.events`` events (or the files written from them): there is no second path that
gathers the same facts.
"""
