"""Nat-HEAR: naturalistic re-rendering of HEAR tasks (issue 3; not built yet)."""
