"""Error types.

Every error a user can cause carries enough context to act on it: which field,
which trial, which file. The CLI prints ``str(error)`` and exits non-zero, so the
message is the whole interface.
"""

from __future__ import annotations


class LoopctlError(Exception):
    """Base class: anything loopctl raises on purpose."""


class SpecError(LoopctlError):
    """A campaign file is invalid; holds every problem found, each naming its field."""

    def __init__(self, problems: list[str], source: str = "campaign") -> None:
        self.problems = problems
        self.source = source
        super().__init__(
            f"{source}: " + "; ".join(problems)
            if len(problems) == 1
            else f"{source}: {len(problems)} problems\n  " + "\n  ".join(problems)
        )

    def __reduce__(self) -> tuple[type[SpecError], tuple[list[str], str]]:
        # rebuilt from its fields, not its message, when it crosses a process boundary
        return (SpecError, (self.problems, self.source))


class ValidationError(LoopctlError):
    """A value (parameters, outcomes, a CSV row) does not fit the campaign."""


class StoreError(LoopctlError):
    """The campaign database cannot be used as asked (locked, missing, tampered, full)."""


class TamperedError(StoreError):
    """The database is not as loopctl wrote it; the message names the first difference."""


class StoreReplaced(StoreError):
    """The database file or its WAL is no longer the one this process opened: whatever it
    writes now may never reach the file others read. Not a retryable condition."""


class CampaignLocked(StoreError):
    """Another controller (or an open Campaign) holds the database."""


class ProtocolError(LoopctlError):
    """A wire message is malformed; ``code`` goes into the ERROR reply."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        super().__init__(message)

    def __reduce__(self) -> tuple[type[LoopctlError], tuple[str, str]]:
        return (type(self), (self.code, str(self)))


class TrialError(LoopctlError):
    """An operation does not fit a trial's state (unknown id, already settled...)."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        super().__init__(message)

    def __reduce__(self) -> tuple[type[LoopctlError], tuple[str, str]]:
        return (type(self), (self.code, str(self)))
