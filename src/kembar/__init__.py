"""kembar: a high-availability cluster for web servers (replicated disk + failover)."""

__version__ = "0.1.0"
