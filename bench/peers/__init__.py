"""Peer implementations of wawindow's core rules, benchmarked beside the worker."""
