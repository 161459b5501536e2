"""Spark batch jobs submitted by Airflow: each is source → pure transforms → sink → ``main``."""
