# lambdawatch's core image: PySpark 4.2 on Python 3.11 with a Java 17 runtime. One image runs the
# Spark master and workers, the speed layer (driver), the init service and the CLI, so drivers
# and executors share one interpreter and one set of packages.
# (The official apache/spark images ship an older Python than PySpark 4.x supports; Bitnami's
# versioned tags stopped being published in 2025.)
FROM python:3.11.14-slim-bookworm

RUN apt-get update \
 && apt-get install -y --no-install-recommends openjdk-17-jre-headless procps tini \
 && rm -rf /var/lib/apt/lists/*

ENV JAVA_HOME=/usr/lib/jvm/java-17-openjdk-amd64 \
    VIRTUAL_ENV=/opt/lambdawatch/.venv \
    PATH=/opt/lambdawatch/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    LAMBDAWATCH_ROOT=/opt/lambdawatch \
    LAMBDAWATCH_VAR_DIR=/var/lib/lambdawatch \
    SPARK_PYTHON=/opt/lambdawatch/.venv/bin/python \
    PYSPARK_PYTHON=/opt/lambdawatch/.venv/bin/python \
    XDG_CACHE_HOME=/var/cache/lambdawatch

WORKDIR /opt/lambdawatch
# Dependencies first (the pinned lock file), so a code change does not reinstall them.
COPY requirements.txt ./
RUN python -m venv "$VIRTUAL_ENV" \
 && pip install --no-cache-dir -r requirements.txt
COPY pyproject.toml README.md config.json ./
COPY lambdawatch lambdawatch
COPY generators generators
COPY spark_apps spark_apps
COPY sql sql
COPY jvm jvm
# uid 50000 is the Airflow image's user too: both write the shared lambdawatch-state volume.
RUN pip install --no-cache-dir --no-deps -e . \
 && useradd --system --uid 50000 --home-dir /var/lib/lambdawatch lambdawatch \
 && mkdir -p /var/lib/lambdawatch /var/cache/lambdawatch \
 && chown lambdawatch /var/lib/lambdawatch /var/cache/lambdawatch

USER lambdawatch
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["lambdawatch", "--help"]
