"""Sound-localization and T60 tasks built from HEAR scene tasks (REFERENCE §5): `generate`
(task folders), `evaluate` (probe any HEAR module), `metrics`, `probe`, `plots`, `baselines`."""
