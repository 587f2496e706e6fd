# tinyq with everything: Python + all extras, arm-none-eabi-gcc, QEMU, Renode and a pinned TFLM tree.
# Default command: the offline demo (digits -> int8 -> firmware -> QEMU -> report in /opt/tinyq/out/demo).
#
#   docker build -t tinyq .
#   docker run --rm -v "$PWD/out:/opt/tinyq/out" tinyq
#
# Every step is one the README's set-up also performs (`make setup`, then the optional
# Renode package and `tinyq setup tflm`), so the image and a laptop stay the same.
FROM python:3.11-slim-bookworm

ARG RENODE_VERSION=1.15.3
ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1

RUN apt-get update \
 && apt-get install -y --no-install-recommends make git ca-certificates curl gcc g++ \
      gcc-arm-none-eabi libnewlib-arm-none-eabi libstdc++-arm-none-eabi-newlib qemu-system-arm \
 && rm -rf /var/lib/apt/lists/*

# Renode (optional emulator; `tinyq run --emulator renode`): the project's own Debian package.
RUN curl -fsSL -o /tmp/renode.deb \
      "https://github.com/renode/renode/releases/download/v${RENODE_VERSION}/renode_${RENODE_VERSION}_amd64.deb" \
 && apt-get update && apt-get install -y --no-install-recommends /tmp/renode.deb \
 && rm -rf /tmp/renode.deb /var/lib/apt/lists/*

WORKDIR /opt/tinyq
COPY . .
RUN make setup EXTRAS=convert,qat,flash,dev \
 && .venv/bin/tinyq setup tflm
ENV PATH=/opt/tinyq/.venv/bin:$PATH

CMD ["make", "demo"]
