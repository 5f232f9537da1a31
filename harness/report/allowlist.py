"""The reviewed allow-list of skips: checks a real cluster of a shipped profile cannot run, with why.

One file (`allowed-skips.yaml`) is read by the release gate (`harness gate --allow-list`),
by the workflows that call it, and by the rehearsal test that proves it: a rehearsal of each
shipped profile skips exactly the checks listed for that profile, no more and no fewer.

Format:

    allowed_skips:
      - profile: kind-cpu*          # fnmatch pattern on the report's profile name
        check: test_probe_sees_*    # fnmatch pattern on the check's name (the test name with params)
        reason: the GPUs are fake capacity; NVML has nothing to show
        skip_reason: 'cluster[.]fake_gpus: true'   # regular expression (re.search) on the recorded skip reason

An entry allows a skip only for the reason it names: the same test skipped for another reason (the
eviction test finding no free node where the profile opted into destructive tests) is not allowed.
One (profile, check) may be listed more than once with different `skip_reason` patterns.

Bad input is one `UsageError` line naming the file and the entry.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from harness.errors import UsageError
from harness.safeyaml import load_one, read_text

_KEYS = {"profile", "check", "reason", "skip_reason"}


@dataclass(frozen=True)
class AllowedSkip:
    profile: str
    check: str
    reason: str
    # A regular expression that must be found (re.search) in the skip reason the report recorded.
    skip_reason: str

    def matches(self, profile: str, check: str) -> bool:
        return fnmatchcase(profile, self.profile) and fnmatchcase(check, self.check)

    def allows_reason(self, actual: str) -> bool:
        return re.search(self.skip_reason, actual) is not None


@dataclass(frozen=True)
class AllowList:
    entries: tuple[AllowedSkip, ...] = ()
    source: str = "<none>"

    def allowing(self, profile: str, check: str, actual_reason: str | None = None) -> AllowedSkip | None:
        """The entry that allows `check` of `profile` to skip (for `actual_reason`, when given), or None."""
        for entry in self.entries:
            if entry.matches(profile, check) and (actual_reason is None or entry.allows_reason(actual_reason)):
                return entry
        return None

    def listing(self, profile: str, check: str) -> tuple[AllowedSkip, ...]:
        """Every entry for `check` of `profile`, whatever reason it names."""
        return tuple(e for e in self.entries if e.matches(profile, check))

    def for_profile(self, profile: str) -> tuple[AllowedSkip, ...]:
        return tuple(e for e in self.entries if fnmatchcase(profile, e.profile))


def parse_allow_list(data: Any, source: str) -> AllowList:
    if data is None:
        return AllowList((), source)
    if not isinstance(data, dict) or set(data) != {"allowed_skips"}:
        raise UsageError(f"{source}: expected a mapping with the one key allowed_skips")
    raw = data["allowed_skips"] or []
    if not isinstance(raw, list):
        raise UsageError(f"{source}: allowed_skips: expected a list of entries, got {type(raw).__name__}")
    entries: list[AllowedSkip] = []
    for i, item in enumerate(raw):
        where = f"{source}: allowed_skips[{i}]"
        if not isinstance(item, dict):
            raise UsageError(f"{where}: expected a mapping with profile, check, reason and skip_reason")
        if set(item) != _KEYS:
            missing, extra = sorted(_KEYS - set(item)), sorted(set(item) - _KEYS)
            what = f"missing {', '.join(missing)}" if missing else f"unknown key {', '.join(extra)}"
            raise UsageError(f"{where}: {what} (expected exactly profile, check, reason and skip_reason)")
        values = {k: item[k] for k in _KEYS}
        for key, value in values.items():
            if not isinstance(value, str) or not value.strip():
                raise UsageError(f"{where}.{key}: expected a non-empty string, got {value!r}")
        try:
            re.compile(values["skip_reason"])
        except re.error as exc:
            raise UsageError(f"{where}.skip_reason: not a Python regular expression ({exc})") from None
        entry = AllowedSkip(values["profile"].strip(), values["check"].strip(), " ".join(values["reason"].split()),
                            values["skip_reason"])
        if (entry.profile, entry.check, entry.skip_reason) in {(e.profile, e.check, e.skip_reason) for e in entries}:
            raise UsageError(f"{where}: profile {entry.profile!r} check {entry.check!r} skip_reason "
                             f"{entry.skip_reason!r} is listed twice")
        entries.append(entry)
    return AllowList(tuple(entries), source)


def load_allow_list(path: str | Path) -> AllowList:
    """Read with the strict loader (duplicate keys, aliases, non-regular files refused: one line each)."""
    p = Path(path)
    return parse_allow_list(load_one(read_text(p, "allow-list"), str(p)), str(p))
