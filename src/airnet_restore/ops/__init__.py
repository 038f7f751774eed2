"""Low-level operators."""
