"""``kembar lab torture``: a seeded schedule of faults against a cluster under load, with
every acknowledged write checked after each fault.

``schedule`` (pure) draws the faults from the seed; ``judge`` (pure) turns what was observed
into problems; ``writer`` runs on a node and appends fsynced records; ``workload`` keeps the
orders and the records going from the host; ``watch`` samples who holds the VIP and the
disk's device all along; ``run`` injects, recovers and checks.
"""
