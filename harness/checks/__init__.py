"""Pure decisions over cluster snapshots: no I/O here, so every rule is tested exhaustively."""
