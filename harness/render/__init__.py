"""Manifests rendered from the profile (issue 3 fills this in)."""
