# Superset 6.1 (the lean official image) with the PostgreSQL driver it needs for its metadata and
# for the lambdawatch database, and lambdawatch's configuration and dashboards as code.
FROM apache/superset:6.1.0

USER root
RUN . /app/.venv/bin/activate \
 && uv pip install --no-cache psycopg2-binary==2.9.13
COPY superset /app/lambdawatch/superset
ENV SUPERSET_CONFIG_PATH=/app/lambdawatch/superset/superset_config.py
USER superset
