"""Accounting: per-allocation usage from Nomad to EGI APEL, PAPI summaries and reports.

Flow (one direction): Nomad API → :mod:`collector` → SQLite :mod:`store` →
exporters (:mod:`apel` cloud + GPU accelerator records into an SSM ``dirq``
queue, :mod:`summary` CSVs for PAPI, :mod:`report` monthly PNG report).
"""
