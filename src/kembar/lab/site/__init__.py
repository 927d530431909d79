"""The lab's demo site: a small shop whose data lives on the replicated disk.

``app.make_app(data_dir)`` builds the WSGI application; ``python -m kembar.lab.site``
serves it under gunicorn. Every response names the node that served it, so a
failover from node1 to node2 is visible in the browser and in the order book.
"""
