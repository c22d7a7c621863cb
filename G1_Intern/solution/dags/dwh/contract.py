"""The warehouse contract: what every load into `dds` must keep true, defined once.

The reference pipeline builds its tables and merges with these names and this
open end; `rules.py` asks the rules below (`sql/contract.sql`) of any warehouse,
a learner's included, for the course's checker and tests; the self-test SQL in
`scripts/` is written from them. Change a rule here and all of them follow.
This module imports nothing from the pipeline, so every step can import it.

SCD2 in this warehouse: each version of a key is one row, valid over the closed
interval [eff_from_dttm, eff_to_dttm] in whole seconds. The current version ends
at OPEN_END; the next version starts one second after the previous one ends.
"""

from __future__ import annotations

OPEN_END = "9999-12-31 23:59:59+00"  # eff_to_dttm of a key's current version
# Columns stg adds after the source's columns: which shop, when it was read, by which run.
STG_COLUMNS = ("src_id", "extracted_dttm", "load_run_id")
# Columns dds adds: the shop, the version's validity (SCD2 tables only), the run that wrote it.
SCD2_COLUMNS = ("eff_from_dttm", "eff_to_dttm")
DDS_COLUMNS = ("src_id", *SCD2_COLUMNS, "load_run_id", "load_dttm")
RESERVED = frozenset(STG_COLUMNS + DDS_COLUMNS)  # a source column may not take these names

# Rule name (a statement of sql/contract.sql returning the rows that break it) -> what it says.
SCD2_RULES = {
    "current_version_count": "exactly one current version per key",
    "interval_order": "eff_from_dttm <= eff_to_dttm",
    "interval_gaps": "no gap between consecutive versions",
    "interval_overlaps": "no overlap between consecutive versions",
    "repeated_versions": "no two consecutive versions with identical values",
    "sub_second": "interval bounds are whole seconds",
    "first_version_start": "a key's first version starts at its created_at",
}
PLAIN_RULES = {"duplicate_keys": "one row per key"}
