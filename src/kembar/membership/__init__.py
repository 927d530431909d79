"""Membership: who is alive — the Heartbeat part. Pure logic (packets, keys, the state
machine) is separate from the sockets and timers."""
