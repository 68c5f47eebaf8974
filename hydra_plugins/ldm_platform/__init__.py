"""Hydra plugins shipped with the LDM platform (Hydra finds plugins only in this namespace)."""
