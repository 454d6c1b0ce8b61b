# syntax=docker/dockerfile:1
# pyhunt sensor image: `python -m pyhunt sensor` (docs/sensor-config.md), run beside stock Zeek in
# the sensor DaemonSet (k8s/). Build from the repository root:
#   docker build -t pyhunt/pyhunt:0.1.0 .
# Two stages: the first compiles the C extension into wheels, the second installs them into a slim
# Python without a compiler.
#
# Capabilities: live capture needs CAP_NET_RAW (AF_PACKET sockets) and CAP_NET_ADMIN (promiscuous
# mode, PACKET_FANOUT). The image runs as the unprivileged user pyhunt (10001), and the Python
# interpreter carries those two capabilities as file capabilities (setcap). A process gets them on
# exec only if the container's bounding set holds them (k8s: capabilities drop ALL, add NET_RAW and
# NET_ADMIN) and privilege escalation is allowed (allowPrivilegeEscalation: true, since
# no_new_privs disables file capabilities). With `docker run`, pass
#   --cap-drop ALL --cap-add NET_RAW --cap-add NET_ADMIN --network host
# The vxlan-listener mode needs no capability at all. No setuid/setgid binary is left in the image.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
# Optional dependency groups of pyhunt to install (the sensor's Elasticsearch and metrics
# libraries); pip warns and goes on for an extra that does not exist.
ARG PYHUNT_EXTRAS=sensor
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY ext ./ext
COPY pyhunt ./pyhunt
# Wheels for pyhunt (the extension compiled here) and every dependency.
RUN pip wheel --no-cache-dir --wheel-dir /wheels ".[${PYHUNT_EXTRAS}]"

FROM ${PYTHON_IMAGE}
ARG PYHUNT_EXTRAS=sensor
LABEL org.opencontainers.image.title="pyhunt" \
      org.opencontainers.image.description="Network threat-hunting sensor: flows with Zeek semantics to Elasticsearch" \
      org.opencontainers.image.licenses="BSD-3-Clause"
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    apt-get update \
 && apt-get install -y --no-install-recommends libcap2-bin \
 && pip install --no-cache-dir --no-index --find-links /wheels "pyhunt[${PYHUNT_EXTRAS}]" \
 && setcap cap_net_raw,cap_net_admin+ep "$(readlink -f /usr/local/bin/python3)" \
 && getcap "$(readlink -f /usr/local/bin/python3)" | grep -q cap_net_admin \
 && apt-get purge -y --auto-remove libcap2-bin \
 && rm -rf /var/lib/apt/lists/* \
 && find / -xdev -perm /6000 -type f -exec chmod a-s {} + \
 && groupadd --system --gid 10001 pyhunt \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/pyhunt --shell /usr/sbin/nologin pyhunt \
 && install -d -o pyhunt -g pyhunt -m 0750 /var/lib/pyhunt \
 && install -d -o pyhunt -g pyhunt -m 0770 /zeek/logs

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYHUNT_STATE_DIR=/var/lib/pyhunt \
    PYHUNT_ZEEK_LOG_DIR=/zeek/logs \
    PYHUNT_HTTP_PORT=9108
USER 10001:10001
WORKDIR /var/lib/pyhunt
VOLUME ["/var/lib/pyhunt"]
EXPOSE 9108/tcp

# For docker/compose; Kubernetes uses the DaemonSet's probes instead.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PYHUNT_HTTP_PORT', '9108'), timeout=4)"]

# SIGTERM makes the sensor flush its flow table and spool (PYHUNT_GRACE_SECONDS).
STOPSIGNAL SIGTERM
ENTRYPOINT ["python", "-m", "pyhunt", "sensor"]
