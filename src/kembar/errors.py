"""The error hierarchy: each class says who is at fault.

The CLI maps these to one-line messages and exit codes; daemons log them. Anything
else escaping a daemon loop is a bug and is logged with the marker ``BUG:``.
"""

from __future__ import annotations


class KembarError(Exception):
    """Base of every error kembar reports to a person."""

    exit_code = 1


class ConfigError(KembarError):
    """The configuration (file or CLI argument) is wrong; the message names the key."""

    exit_code = 2


class PeerProtocolError(KembarError):
    """The remote side broke the protocol: drop the connection, count it, apply nothing."""


class AuthError(PeerProtocolError):
    """The peer failed authentication (wrong secret, wrong name, reflected challenge)."""


class StateError(KembarError):
    """The request is refused in the current state (e.g. promoting Inconsistent data)."""


class MetadataError(KembarError):
    """On-disk metadata is missing, corrupt or belongs to something else."""


class DaemonNotRunning(KembarError):
    """No process answers on the control socket."""


class LocalBug(KembarError):
    """An internal invariant failed: a bug in kembar itself."""
