"""`python -m hear_gram.suite`: from HEAR tasks to the paper's table for any HEAR modules.

- `config`: the TOML models file and the run settings;
- `units`: the units (model x condition x task), building what they need, running one;
- `report`: WORK/report/ (results.csv, results.json, REPORT.md, figures) from the done units;
- `__main__`: the command line, local threads, shards and submitit job arrays.
"""
