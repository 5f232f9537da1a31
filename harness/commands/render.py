"""`python -m harness render --profile FILE --out DIR`."""

from __future__ import annotations

import argparse

from harness.config import load_profile
from harness.render import render_all, write_rendered


def run_render(args: argparse.Namespace) -> int:
    profile = load_profile(args.profile)
    written = write_rendered(render_all(profile), args.out)
    for path in written:
        print(path)
    return 0
