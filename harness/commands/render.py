"""`python -m harness render --profile FILE --out DIR`."""

from __future__ import annotations

import argparse

from harness.config import load_profile
from harness.load.job import render_run
from harness.render import write_rendered


def run_render(args: argparse.Namespace) -> int:
    profile = load_profile(args.profile)
    written = write_rendered(render_run(profile), args.out)
    for path in written:
        print(path)
    return 0
