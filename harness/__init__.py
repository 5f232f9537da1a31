"""End-to-end test harness for GPU model serving with Seldon Core 2 on dedicated GPU nodes."""

__version__ = "0.1.0"
