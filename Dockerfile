# The inventory-monitor application image: every Procfile process and the `invmon` CLI.
# Build: docker build -t inventory-monitor:local .   (compose.yaml does this for you)
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

WORKDIR /app

# The pinned, hash-checked runtime dependencies first (a layer that changes only with the lock), then the
# metadata and the packages that pyproject's [tool.setuptools.packages.find] includes.
COPY requirements-runtime.lock ./
RUN pip install --require-hashes -r requirements-runtime.lock
COPY pyproject.toml README.md Procfile ./
COPY contracts/ contracts/
COPY workers/ workers/
COPY api_edge/ api_edge/
COPY db/ db/
COPY infra/ infra/
COPY invmon/ invmon/

RUN pip install --no-deps . \
    && rm -rf build ./*.egg-info \
    && useradd --system --uid 10001 --user-group --no-create-home --home-dir /app invmon

USER invmon

# Edge (API, /metrics), WebSocket relay (/v1/live, /metrics), stock worker, outbox relay, price worker and
# notifier (/metrics, /health): the default port of each Procfile process.
EXPOSE 8000 8001 9101 9102 9103 9104

# Inside a container every process must listen on all interfaces.
ENV INVMON_EDGE_HOST=0.0.0.0

CMD ["python", "-m", "api_edge.main"]
