# pqike in a container: the daemon and CLI with the classic groups, ML-KEM and ML-DSA
# (all from `cryptography`). BIKE, HQC, FrodoKEM, Kyber and Falcon need the liboqs C library,
# which this image does not build: mount an existing liboqs 0.16.0 install and point
# OQS_INSTALL_PATH at it (e.g. -v $HOME/_oqs:/opt/oqs -e OQS_INSTALL_PATH=/opt/oqs).
# Running IPsec needs NET_ADMIN (XFRM, routes) and /dev/net/tun for the userspace data plane.
FROM python:3.11-slim

RUN apt-get update \
 && apt-get install -y --no-install-recommends iproute2 iputils-ping \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY pyproject.toml README.md ./
COPY kem ./kem
COPY pqike ./pqike
COPY configs ./configs
RUN pip install --no-cache-dir '.[oqs]'

EXPOSE 500/udp 4500/udp
ENTRYPOINT ["pqike"]
CMD ["demo"]
