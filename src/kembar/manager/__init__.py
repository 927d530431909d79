"""The resource manager: where resource groups run (pure policy) and how they get there."""
