"""Helpers the harness's own tests share (not tests): simulated clusters, servers, fake tools."""
