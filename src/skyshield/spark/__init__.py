"""Batch behaviour analytics on Spark (optional extra ``spark``): the per-number window features of
:mod:`skyshield.behaviour.features` over partitioned Parquet call records, from one shared definition."""
