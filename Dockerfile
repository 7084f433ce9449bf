# pqike in a container: the daemon and CLI with every KE method and signature (liboqs 0.16.0,
# liboqs-python, pqcrypto), running as the non-root user pqike. Not built in CI (no Docker
# engine there); tests/unit/test_packaging.py checks this file. README "Docker":
#   docker build -t pqike .
#   docker run --rm pqike                     # the demo on loopback ports, no privileges
#   docker run --rm --user root --cap-add NET_ADMIN --device /dev/net/tun \
#       -v /etc/pqike:/etc/pqike:ro -p 500:500/udp -p 4500:4500/udp \
#       pqike daemon --config /etc/pqike -F   # a gateway
# A gateway needs CAP_NET_ADMIN (addresses, routes, XFRM or TUN) and binds UDP 500: Docker
# gives added capabilities to root only, hence --user root (still confined to Docker's
# default capability set plus NET_ADMIN). /dev/net/tun is for the userspace data plane.

# --- build stage: liboqs 0.16.0 from the release source the README's setup uses -----------
FROM python:3.11-slim AS liboqs
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake ninja-build gcc libc6-dev libssl-dev git ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY scripts/liboqs.sh /build/liboqs.sh
# packaging/vendor/liboqs-0.16.0.tar.gz when present (sha256 checked), else the upstream tag
COPY packaging/vendor/ /build/vendor/
RUN tarball=/build/vendor/liboqs-0.16.0.tar.gz; [ -f "$tarball" ] || tarball=; \
    PQIKE_LIBOQS_TARBALL=$tarball OQS_INSTALL_PATH=/opt/liboqs bash /build/liboqs.sh

# --- the image ---------------------------------------------------------------------------------
FROM python:3.11-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends iproute2 iputils-ping \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --create-home --home-dir /home/pqike --shell /usr/sbin/nologin pqike
COPY --from=liboqs /opt/liboqs /opt/liboqs
ENV OQS_INSTALL_PATH=/opt/liboqs
WORKDIR /src
COPY pyproject.toml README.md ./
COPY kem ./kem
COPY pqike ./pqike
COPY configs ./configs
RUN pip install --no-cache-dir '.[oqs,pqcrypto]'

USER pqike
WORKDIR /home/pqike
EXPOSE 500/udp 4500/udp
ENTRYPOINT ["pqike"]
# as pqike (not root) the demo runs its two daemons on loopback ports
CMD ["demo"]
