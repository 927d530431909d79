"""The cluster daemon (``kembar daemon``): membership today, the resource manager next.

One process per node, in the foreground for supervisors (systemd: ``kembar.service``);
its control API is a root-only Unix socket, ``/run/kembar/kembar.sock``.
"""
