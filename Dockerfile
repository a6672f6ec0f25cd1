# checkout-gates operator image: `docker build -t checkout-gates:0.1.0 .`
# The builder turns the project and its dependencies into wheels; the final image installs only
# those wheels (no compiler, no pip cache, no source tree) and runs as an unprivileged user.

FROM python:3.11-slim AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
# .dockerignore lets in only what the wheel is built from: pyproject.toml, operator/ (and the
# README and LICENSE when present), and requirements.lock.
COPY . .
# The dependencies exactly as locked, each checked against its hash; then the project alone.
RUN pip wheel --no-cache-dir --require-hashes --wheel-dir /wheels -r requirements.lock \
    && pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.11-slim
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
RUN groupadd --system --gid 10001 checkout-gates \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin checkout-gates
# Only wheels, from the builder, and no index: nothing is fetched or compiled here.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels /wheels/checkout_gates-*.whl
USER 10001:10001
# 8080: liveness (/healthz); 8081: Prometheus metrics.
EXPOSE 8080 8081
ENTRYPOINT ["checkout-gates", "run"]
