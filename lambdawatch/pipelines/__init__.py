"""What the DAGs do, as plain functions of settings (and of the data interval where it matters).

DAG files only wire these together; they are tested here without Airflow, and run unchanged
from a DAG task, the CLI or a test. Nothing in this package imports Airflow.
"""
