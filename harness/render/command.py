"""`python -m harness render`."""

from __future__ import annotations

import argparse

from harness.config import load_profile


def run_render(args: argparse.Namespace) -> int:
    load_profile(args.profile)
    raise NotImplementedError("render lands with the manifests issue")
