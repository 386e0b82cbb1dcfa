"""Errors that name their fix.

Every error a user can trigger derives from :class:`RethinkgenError`; the CLI prints its message
(without a traceback) and exits with status 2.
"""

from __future__ import annotations


class RethinkgenError(Exception):
    """Base class: a problem with the user's input or environment, with the fix in the message."""


class UnknownNameError(RethinkgenError, KeyError):
    """A registry lookup failed; the message lists the valid names."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ConfigError(RethinkgenError, ValueError):
    """An impossible value or combination in a config or spec."""


class DatasetNotFoundError(RethinkgenError, FileNotFoundError):
    """A dataset's files are missing; the message says where we looked and how to fetch them."""


class UnsafeFileError(RethinkgenError):
    """A data file holds something other than what its format allows (e.g. code in a pickle)."""
