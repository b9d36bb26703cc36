# The Shekara image: stream processors, ClickHouse sink, simulator and the `shekara` CLI.
# docker-compose.yml builds it and runs it in server mode; all settings come from SHEKARA_* variables.
FROM python:3.11.13-slim-bookworm

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN groupadd --system shekara \
    && useradd --system --gid shekara --home-dir /var/lib/shekara --create-home shekara

WORKDIR /app
COPY pyproject.toml README.md ./
COPY shekara/ shekara/
COPY schemas/ schemas/
COPY producers/ producers/
COPY streams/ streams/
COPY sinks/ sinks/
COPY harness/ harness/
COPY rules/ rules/
COPY deploy/healthcheck.py deploy/healthcheck.py
# [server] adds rocksdict: the processors keep their tables in RocksDB (SHEKARA_FAUST__STORE=rocksdb://).
RUN pip install ".[server]"

# The code finds its reference data (rules/) next to its packages, so it runs from /app rather than from the
# copy pip put in site-packages; the installed dependencies and the `shekara` script are used as installed.
ENV PYTHONPATH=/app \
    SHEKARA_MODE=server \
    SHEKARA_DATA_DIR=/var/lib/shekara \
    SHEKARA_RULES_FILE=/app/rules/kz.toml

USER shekara
# Faust web server of a processor: the ops page and /api/alerts.
EXPOSE 6066
CMD ["shekara", "--help"]
