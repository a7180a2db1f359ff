#!/usr/bin/env bash
# make run: the main job on a self-contained default.
#
# Starts a throwaway PostgreSQL under .run/ (unless DATABASE_URL is set),
# mq-service, and the collector with conf/telemetry-collector.toml, then
# replays the real datasets from shared/data through telemetry-streamer.
# Prints how to look at the data, and stops everything on Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
RUN_DIR=${RUN_DIR:-$ROOT/.run}
DATA_DIR=${DATA_DIR:-}
MQ_ADDR=${MQ_ADDR:-127.0.0.1:50051}
PG_PORT=${PG_PORT:-55432}
METRICS_ADDR=${METRICS_ADDR:-127.0.0.1:9273}
mkdir -p "$RUN_DIR"

# The real datasets: shared/data beside the checkout (as laid out for this
# project), or DATA_DIR.
if [ -z "$DATA_DIR" ]; then
  for d in "$ROOT/../shared/data" "$ROOT/shared/data"; do
    if [ -d "$d/dcgm" ]; then DATA_DIR=$(cd "$d" && pwd); break; fi
  done
fi
if [ -z "$DATA_DIR" ] || [ ! -d "$DATA_DIR/dcgm" ]; then
  echo "make run: cannot find the datasets (shared/data); set DATA_DIR=/path/to/shared/data" >&2
  exit 1
fi

pids=()
cleanup() {
  trap - INT TERM EXIT
  echo
  echo "== stopping"
  for ((i=${#pids[@]}-1; i>=0; i--)); do
    kill -TERM "${pids[$i]}" 2>/dev/null || true
    wait "${pids[$i]}" 2>/dev/null || true
  done
  echo "stopped (logs in $RUN_DIR)"
}
trap cleanup INT TERM EXIT

port_busy() { (exec 3<>"/dev/tcp/${1%:*}/${1##*:}") 2>/dev/null; }

# 1. PostgreSQL
if [ -z "${DATABASE_URL:-}" ]; then
  echo "== starting a throwaway PostgreSQL in $RUN_DIR/pg (port $PG_PORT)"
  go build -o bin/throwaway-pg ./internal/pgtest/cmd/throwaway-pg
  bin/throwaway-pg --dir "$RUN_DIR/pg" --port "$PG_PORT" >"$RUN_DIR/postgres.out" 2>"$RUN_DIR/postgres.log" &
  pids+=($!)
  for _ in $(seq 1 240); do
    grep -q '^DATABASE_URL=' "$RUN_DIR/postgres.out" 2>/dev/null && break
    kill -0 "${pids[-1]}" 2>/dev/null || { cat "$RUN_DIR/postgres.log" >&2; exit 1; }
    sleep 0.5
  done
  grep -q '^DATABASE_URL=' "$RUN_DIR/postgres.out" || { echo "PostgreSQL did not start; see $RUN_DIR/postgres.log" >&2; exit 1; }
  DATABASE_URL=$(sed -n 's/^DATABASE_URL=//p' "$RUN_DIR/postgres.out" | head -1)
  export DATABASE_URL
else
  echo "== using DATABASE_URL from the environment"
fi

# 2. mq-service
if port_busy "$MQ_ADDR"; then
  echo "make run: $MQ_ADDR is in use; stop what listens there or set MQ_ADDR" >&2
  exit 1
fi
echo "== starting mq-service on $MQ_ADDR"
bin/mq-service --listen "$MQ_ADDR" --data-dir "$RUN_DIR/mq" >"$RUN_DIR/mq-service.log" 2>&1 &
pids+=($!)

# 3. the collector
echo "== starting telemetry-collector (conf/telemetry-collector.toml)"
MQ_ADDRESS=$MQ_ADDR METRICS_ADDRESS=$METRICS_ADDR bin/telemetry-collector --config conf/telemetry-collector.toml \
  >"$RUN_DIR/collector.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 120); do
  curl -fs "http://$METRICS_ADDR/readyz" >/dev/null 2>&1 && break
  kill -0 "${pids[-1]}" 2>/dev/null || { echo "the collector exited:" >&2; tail -20 "$RUN_DIR/collector.log" >&2; exit 1; }
  sleep 0.5
done

# 4. replay the real data
echo "== streaming the real datasets"
bin/telemetry-streamer --address "$MQ_ADDR" --topic gpu-telemetry --format dcgm-csv --batch 100 \
  "$DATA_DIR/dcgm/dcgm_metrics_20250718_134233.csv"
bin/telemetry-streamer --address "$MQ_ADDR" --topic gpu-telemetry --format nvidia-smi-csv --batch 10 \
  "$DATA_DIR/h100/nvidia-smi-query-gpu.csv"
bin/telemetry-streamer --address "$MQ_ADDR" --topic gpu-telemetry --format prometheus --batch 0 \
  "$DATA_DIR/dcgm/lke-ai-conformance_README_dcgm-exporter-metrics.txt"

psql_cmd="psql '$DATABASE_URL'"
for _ in $(seq 1 60); do
  n=$(psql "$DATABASE_URL" -Atc "select count(*) from gpu_metrics" 2>/dev/null || echo 0)
  [ "${n:-0}" -gt 0 ] && break
  sleep 0.5
done
cat <<MSG

== telemetry is flowing: $(psql "$DATABASE_URL" -Atc "select count(*) from gpu_metrics" 2>/dev/null || echo '?') samples in gpu_metrics

  $psql_cmd -c "select host, gpu_index, round(value::numeric,1) as watts
      from gpu_metrics where metric = 'gpu_power_watts' order by value desc limit 10"

  metrics:  http://$METRICS_ADDR/metrics
  logs:     $RUN_DIR/*.log
  more data: bin/telemetry-streamer --address $MQ_ADDR --topic gpu-telemetry --format dcgm-csv --loop ...

Press Ctrl-C to stop everything.
MSG
wait "${pids[@]}"
