"""`kembar drill`: the safe failover scenarios, run on a real cluster."""
