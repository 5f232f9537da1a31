"""Errors shared by every layer.

`UsageError` is the one way bad input (a profile, a flag, a manifest, a cluster state the harness
cannot work with) leaves the harness: the CLI prints its single line and exits 2, and the pytest
plugin turns it into `pytest.UsageError`. Messages name the file or field and what was expected.
"""

from __future__ import annotations


class HarnessError(Exception):
    """Base class for errors the harness raises on purpose."""


class UsageError(HarnessError):
    """Unusable input. `str(err)` is one line that names the source, the field and the expectation."""

    exit_code = 2

    def __init__(self, message: str) -> None:
        # One line, always: a multi-line message would be cut by CI log folding and by gate tables.
        super().__init__(" ".join(message.split()))


class WaitTimeout(HarnessError):
    """A wait ran past its deadline. The message names what was awaited and the last state seen."""


class WaitGaveUp(WaitTimeout):
    """A wait stopped before its deadline because the awaited state can no longer come (a pod that
    cannot schedule or pull, a crash loop, a Model Seldon failed). The message names the cause."""


class CheckFailed(HarnessError):
    """A check over cluster evidence failed; the message is the human-readable reason."""
