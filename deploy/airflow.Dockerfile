# Airflow 3.3 with the lambdawatch package its DAG tasks call, plus lambdawatch's core
# environment (PySpark, Prophet) and a Java 17 runtime: batch jobs are spark-submitted from the
# task, in client mode, to spark://spark-master:7077. The two environments stay apart, as in
# local mode, because Airflow's pins conflict with the core ones.
FROM apache/airflow:3.3.2-python3.11

USER root
RUN apt-get update \
 && apt-get install -y --no-install-recommends openjdk-17-jre-headless \
 && rm -rf /var/lib/apt/lists/*
ENV JAVA_HOME=/usr/lib/jvm/java-17-openjdk-amd64 \
    LAMBDAWATCH_ROOT=/opt/lambdawatch \
    LAMBDAWATCH_VAR_DIR=/var/lib/lambdawatch \
    SPARK_PYTHON=/opt/lambdawatch/.venv/bin/python \
    PYSPARK_PYTHON=/opt/lambdawatch/.venv/bin/python \
    XDG_CACHE_HOME=/var/cache/lambdawatch
# After Airflow's own: PySpark's spark-submit, which the spark_default connection's hook runs.
ENV PATH="${PATH}:/opt/lambdawatch/.venv/bin"

WORKDIR /opt/lambdawatch
COPY requirements.txt ./
RUN /usr/local/bin/python3.11 -m venv /opt/lambdawatch/.venv \
 && /opt/lambdawatch/.venv/bin/pip install --no-cache-dir -r requirements.txt
COPY pyproject.toml README.md config.json ./
COPY lambdawatch lambdawatch
COPY generators generators
COPY spark_apps spark_apps
COPY sql sql
COPY jvm jvm
COPY dags dags
COPY requirements/airflow.txt requirements/airflow.txt
RUN /opt/lambdawatch/.venv/bin/pip install --no-cache-dir --no-deps -e . \
 && mkdir -p /var/lib/lambdawatch /var/cache/lambdawatch \
 && chown airflow /var/lib/lambdawatch /var/cache/lambdawatch

USER airflow
# The package into Airflow's own environment (the tasks import lambdawatch), with the same
# lock file as local mode's .venv-airflow, which pins apache-airflow to this image's version.
RUN pip install --no-cache-dir -r requirements/airflow.txt
