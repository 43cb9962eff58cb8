# syntax=docker/dockerfile:1
# es-serverless gateway: the data plane tenants point their Elasticsearch and OpenSearch clients at.
# Build from the repository root:
#   docker build -f deploy/docker/gateway.Dockerfile -t es-serverless/gateway:0.1.0 .
# REGISTRY points every stage at a mirror for air-gapped builds (pip then needs a mirror too).
ARG REGISTRY=docker.io
ARG PYTHON_IMAGE=library/python:3.11.10-slim-bookworm
ARG GO_IMAGE=library/golang:1.22.12-bookworm

# the byte pump (services/gateway/pump): Go's standard library only, so nothing is fetched
FROM ${REGISTRY}/${GO_IMAGE} AS pump
WORKDIR /src
COPY services/gateway/pump ./
RUN CGO_ENABLED=0 go build -trimpath -o /ess-pump .

FROM ${REGISTRY}/${PYTHON_IMAGE} AS builder
WORKDIR /src
COPY pyproject.toml ./
COPY libs ./libs
COPY services ./services
# wheels for the project and all it needs; whatever building them takes stays in this stage
RUN python -m pip wheel --no-cache-dir --wheel-dir /wheels .

FROM ${REGISTRY}/${PYTHON_IMAGE}
RUN groupadd --system --gid 10001 ess \
 && useradd --system --uid 10001 --gid ess --no-create-home --shell /usr/sbin/nologin ess
COPY --from=builder /wheels /wheels
COPY --from=pump /ess-pump /usr/local/bin/ess-pump
# install from the wheels only, then drop the installers: nothing in this image builds or fetches code
RUN python -m pip install --no-cache-dir --no-index --find-links /wheels es-serverless \
 && rm -rf /wheels \
 && python -m pip uninstall --yes setuptools wheel pip
WORKDIR /app
# every address is a service name: compose service names here, the ConfigMap's cluster DNS names on Kubernetes
ENV PYTHONUNBUFFERED=1 \
    ESS_API_HOST=0.0.0.0 \
    ESS_GATEWAY_HOST=0.0.0.0 \
    ESS_GATEWAY_PORT=9200 \
    ESS_GATEWAY_METRICS_PORT=9201 \
    ESS_GATEWAY_PUMP_BIN=/usr/local/bin/ess-pump \
    ESS_NATS_URL=nats://nats:4222 \
    ESS_LOG_FORMAT=json
USER 10001:10001
EXPOSE 9200 9201
# the process checks itself, inside its own container
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ['ESS_GATEWAY_PORT'] + '/health', timeout=4)"]
CMD ["python", "-m", "services.gateway"]
