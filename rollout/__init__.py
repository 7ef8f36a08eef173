"""Staged rollout: shadow and beta traffic, the router, promote and roll back (not built yet)."""
