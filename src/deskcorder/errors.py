"""The one error root of deskcorder and its few subclasses.

Every error that reaches the CLI is a :class:`DeskcorderError`; its ``exit_code``
is the process exit status documented in the README and its ``str()`` is the
one-line message shown to the user.
"""

from __future__ import annotations


class DeskcorderError(Exception):
    """Root of all deskcorder errors. ``str(err)`` is a one-line message."""

    exit_code: int = 1


class PolicyError(DeskcorderError):
    """A policy file is unreadable, malformed or invalid (exit code 2)."""

    exit_code = 2


class UsageError(DeskcorderError):
    """Bad command-line input (exit code 2)."""

    exit_code = 2


class FormatError(DeskcorderError):
    """A session file is not a valid deskcorder chunk (exit code 1)."""

    exit_code = 1


class EnvironmentUnsupported(DeskcorderError):
    """Capture cannot work here: no display, missing permission, Wayland ... (exit code 3)."""

    exit_code = 3


class AlreadyRunning(DeskcorderError):
    """Another agent already runs for this user (exit code 4)."""

    exit_code = 4


class AgentNotRunning(DeskcorderError):
    """The control socket cannot be reached (exit code 5)."""

    exit_code = 5
