"""`python -m harness.report.schema [OUT]`: write the report JSON schema (default: stdout).

docs/report.schema.json is this output; tests/report/test_report_schema.py fails when it is stale.
"""

from __future__ import annotations

import sys
from pathlib import Path

from harness.report.model import schema_json


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        sys.stderr.write("usage: python -m harness.report.schema [OUT]\n")
        return 2
    if argv:
        Path(argv[0]).write_text(schema_json(), encoding="utf-8")
    else:
        sys.stdout.write(schema_json())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
