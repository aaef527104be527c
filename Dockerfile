# One image for every role: worker (default CMD), beat, flower, dispatch, indicator, sim.
# Build: docker compose build   (or: docker build -t candle-backfill .)
# No `# syntax=` line on purpose: BuildKit would fetch a frontend image from a registry
# for it, and an offline or mirrored build would fail there. The built-in frontend is
# enough; the only images this build needs are the base image below (and redis:7 to run).
# Operator's guide: README.md, section "Operations".
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    BACKFILL_LOG_JSON=1

# Only what the package needs (see .dockerignore): no .env, no key files, no tests.
WORKDIR /src
COPY pyproject.toml README.md celeryconfig.py ./
COPY core/ core/
COPY backfill/ backfill/
COPY workers/ workers/
COPY coinbase_sim/ coinbase_sim/
RUN pip install . && rm -rf build ./*.egg-info

# Run as an unprivileged user from its own (empty) home: the installed package is what
# runs, and no stray .env in the working directory is picked up by the settings loader.
# UID 10001: a mounted key file must be readable by it (README.md, "Operations", "With a key").
RUN groupadd --system --gid 10001 backfill \
    && useradd --system --uid 10001 --gid backfill --create-home --home-dir /home/backfill \
       --shell /usr/sbin/nologin backfill
USER backfill:backfill
WORKDIR /home/backfill

# Flower's port (only the flower service publishes it).
EXPOSE 5555

# Healthy when this container's worker node answers a ping; other roles override or
# disable it in docker-compose.yml. Celery names the node celery@$HOSTNAME by default.
HEALTHCHECK --interval=30s --timeout=15s --start-period=30s --retries=3 \
    CMD celery -A backfill inspect ping -d "celery@$HOSTNAME" --timeout 5 >/dev/null || exit 1

# Default role: a worker consuming every queue in priority order (control first, then the
# live refreshes, then the backfill; 5m, 15m, 1h, 4h, 1d, then the rarer timeframes). No -Q:
# the queues and their order come from the configuration (celeryconfig's task_queues).
CMD ["celery", "-A", "backfill", "worker", "-c", "1", "-l", "INFO"]
