"""lambdawatch: a lambda-architecture platform for infrastructure telemetry."""

from __future__ import annotations

__version__ = "0.1.0"
