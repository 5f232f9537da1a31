"""Profiles in, manifests out: validation with one clear line, rendering, the manifest linter, bounded inputs,
and broken profiles that must fail the right suite."""
