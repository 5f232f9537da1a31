"""Whole runs of the suites (pytest in a subprocess or pytester): the plugin, the first hour, signals and
interruptions, leftovers, faults, shared clusters, child lifetimes and secrets."""
