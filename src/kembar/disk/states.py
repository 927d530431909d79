"""Roles, disk states and connection states, named as DRBD names them."""

from __future__ import annotations

from enum import Enum


class Role(str, Enum):
    PRIMARY = "Primary"
    SECONDARY = "Secondary"
    UNKNOWN = "Unknown"


class DiskState(str, Enum):
    DISKLESS = "Diskless"
    INCONSISTENT = "Inconsistent"
    OUTDATED = "Outdated"
    CONSISTENT = "Consistent"
    UP_TO_DATE = "UpToDate"
    DUNKNOWN = "DUnknown"


DISK_CODES = {state: i for i, state in enumerate(DiskState)}
DISK_BY_CODE = {i: state for state, i in DISK_CODES.items()}


class ConnState(str, Enum):
    STANDALONE = "StandAlone"
    CONNECTING = "Connecting"  # DRBD 8.4: WFConnection
    CONNECTED = "Connected"


class Repl(str, Enum):
    OFF = "Off"
    ESTABLISHED = "Established"
    SYNC_SOURCE = "SyncSource"
    SYNC_TARGET = "SyncTarget"
    VERIFY_S = "VerifyS"
    VERIFY_T = "VerifyT"
