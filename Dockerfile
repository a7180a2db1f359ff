# Multi-stage build of every telemetry-collector binary.
#   docker build -t telemetry-collector .
#   docker run --rm -e DATABASE_URL=postgres://... -v $PWD/conf:/etc/telemetry-collector telemetry-collector
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY examples/cluster_label/go.mod examples/cluster_label/go.sum* examples/cluster_label/
COPY . .
RUN make build VERSION="$(git describe --tags --always 2>/dev/null || echo docker)"

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 collector \
 && useradd --system --uid 10001 --gid collector --home-dir /var/lib/telemetry-collector --create-home collector
COPY --from=build /src/bin/ /usr/local/lib/telemetry-collector/
COPY conf/telemetry-collector.toml /etc/telemetry-collector/telemetry-collector.toml
RUN ln -s /usr/local/lib/telemetry-collector/telemetry-collector /usr/local/bin/telemetry-collector \
 && ln -s /usr/local/lib/telemetry-collector/mq-service /usr/local/bin/mq-service \
 && ln -s /usr/local/lib/telemetry-collector/telemetry-streamer /usr/local/bin/telemetry-streamer
RUN mkdir -p /etc/telemetry-collector/telemetry-collector.d
USER collector:collector
WORKDIR /var/lib/telemetry-collector
ENV TELEMETRY_COLLECTOR_PLUGIN_DIR=/usr/local/lib/telemetry-collector/plugins
EXPOSE 9273
ENTRYPOINT ["telemetry-collector"]
CMD ["--config", "/etc/telemetry-collector/telemetry-collector.toml", "--config-directory", "/etc/telemetry-collector/telemetry-collector.d"]
