# One image for every process of the platform but search; the command picks which:
#   bookstore run-service <auth|catalog|...>   a nameko service
#   bookstore gateway                          the HTTP gateway (port 8080)
#   bookstore migrate                          create databases, apply migrations (one-shot)
#   bookstore ping <service>                   exit 0 if the service answers (operators)
# Two targets (docs/decisions/0095):
#   docker build -t bookstore .                          the lean image (default)
#   docker build --target search -t bookstore-search .   + pandas/scipy/scikit-learn
FROM python:3.11-slim-bookworm AS base

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    # Containers are reached from outside themselves; bin/run keeps the loopback default.
    GATEWAY_HOST=0.0.0.0 \
    GATEWAY_PORT=8080 \
    METRICS_PORT=9100

WORKDIR /app

# Dependencies first, in their own layer: code changes do not reinstall them.
COPY requirements.txt requirements-search.txt constraints.txt ./
RUN pip install -r requirements.txt -c constraints.txt

COPY pyproject.toml README.md ./
COPY common ./common
COPY gateway ./gateway
COPY ops ./ops
COPY openapi ./openapi
COPY svc_auth ./svc_auth
COPY svc_catalog ./svc_catalog
COPY svc_order ./svc_order
COPY svc_payment ./svc_payment
COPY svc_search ./svc_search
COPY svc_notify ./svc_notify
COPY svc_bridge ./svc_bridge
COPY svc_analytics ./svc_analytics
RUN pip install --no-deps --no-build-isolation -e . \
    && useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin bookstore

USER 10001
EXPOSE 8080 9100
# Liveness of whichever process runs: the gateway's /health or a service's /healthz
# (ops/healthcheck.py: standard library only, one local request).
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-m", "ops.healthcheck"]
ENTRYPOINT ["bookstore"]
CMD ["gateway"]

# The search service's image: the recommender's ML stack on top of the same code.
FROM base AS search
USER root
RUN pip install -r requirements-search.txt -c constraints.txt
USER 10001

# The default target, last: everything else, without the ML stack.
FROM base AS lean
