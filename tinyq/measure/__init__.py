"""Run, bench and validate firmware on a device; records and reports."""
