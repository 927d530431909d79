"""The local control/data protocol on the disk process's Unix socket.

Request:  ``!BIQI`` op, tag, offset, length; then ``length`` bytes (write data or JSON).
Reply:    ``!BII``  status (0 ok, 1 error), tag, length; then ``length`` bytes (read data,
          JSON reply, or a UTF-8 error message).
Requests on one connection may be pipelined; replies carry the request's tag.
"""

from __future__ import annotations

import struct
from enum import IntEnum

REQ = struct.Struct("!BIQI")
REP = struct.Struct("!BII")
MAX_REQUEST = 1024 * 1024 + 64 * 1024


class Op(IntEnum):
    WRITE = 1
    READ = 2
    FLUSH = 3
    CONTROL = 4


OK = 0
ERROR = 1
