"""Declarations the DAG files share (assets, default arguments, schedules); not DAGs."""
