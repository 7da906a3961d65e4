"""Benchmarks: scripts that print figures (overhead, stores) and the quality benchmark (quality/)."""
