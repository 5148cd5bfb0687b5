# gim-airflow image: Airflow 3.3.2 with the project's pinned dependencies and the gim package.
# Built by docker-compose.yml; dags/, plugins/ and config/ are mounted so edits need no rebuild.
FROM apache/airflow:3.3.2-python3.11
USER root
RUN mkdir -p /opt/gim && chown airflow: /opt/gim
USER airflow
WORKDIR /opt/gim
COPY --chown=airflow: requirements.lock pyproject.toml README.md ./
RUN pip install --no-cache-dir -r requirements.lock
COPY --chown=airflow: gim_jobs ./gim_jobs
RUN pip install --no-cache-dir --no-deps -e .
