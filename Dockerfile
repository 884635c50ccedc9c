# The adapter of one school: `docker build -t vhs-sync .`, then
#   docker run -v ./vhs-ka.toml:/etc/vhs-sync/school.toml:ro -v vhs-ka:/var/lib/vhs-sync \
#     -e VHS_SYNC_BROKER__URL=amqp://vhs-ka:PASSWORD@broker:5672/vhskoob vhs-sync
# runs `vhs-sync run`; any other command: `docker run ... vhs-sync status`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY adapter ./adapter
RUN pip install . \
    && useradd --system --uid 10001 --user-group --home-dir /var/lib/vhs-sync --create-home vhs-sync

# The state DB (SQLite by default) lives in the volume; the config is mounted read-only.
USER vhs-sync
WORKDIR /var/lib/vhs-sync
VOLUME ["/var/lib/vhs-sync"]
ENV VHS_SYNC_CONFIG=/etc/vhs-sync/school.toml
# [metrics] port: /metrics, /healthz and /readyz (set host = "0.0.0.0" to reach it from outside).
EXPOSE 9464
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9464/healthz', timeout=4)"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["vhs-sync"]
CMD ["run"]
