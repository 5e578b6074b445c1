"""Sound-localization and T60 tasks built from HEAR datasets (issue 4; not built yet)."""
