"""Detectors: pure functions over DataFrames, one contract for stream and batch.

The speed layer's queries, the batch jobs and backtests call the same functions, so archived
history goes through the very code that scores live data. Each returns rows of the one anomaly
shape (``detectors.anomaly``).
"""
