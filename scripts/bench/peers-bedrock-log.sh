#!/usr/bin/env bash
# peers-bedrock-log.sh PORT UPSTREAM_PORT: Meridian in front of the ../shared/peers mock upstream,
# with the config of peers' meridian.sh and the invocation log to a file (SINK=none turns it off).
# MODEL overrides the catalog model (a Nova model makes /v1/messages translate to Converse,
# which the mock answers). OTLP=http/protobuf (or grpc, http/json) turns traces on, sent to the
# mock's address: every span is encoded, batched and sent, and the mock answers 404 (they count as
# export_failed after the same work). For run-all.sh's `custom` target: see README, Performance.
port=$1; up=$2; bin=${MERIDIAN_BIN:?}
dir=${PEERS_STATE:-/tmp/peers}/meridian-custom-$port; mkdir -p "$dir"; rm -f "$dir/invocations.ndjson"
cat >"$dir/meridian.toml" <<TOML
region = "us-east-1"
[upstream]
mode = "aws"
endpoints = { us-east-1 = "http://127.0.0.1:$up" }
[models.mock-model]
model = "${MODEL:-anthropic.claude-3-haiku-20240307-v1:0}"
residency = ["us-east-1"]
[models.mock-model-stream]
model = "${MODEL:-anthropic.claude-3-haiku-20240307-v1:0}"
residency = ["us-east-1"]
[logging]
sink = "${SINK:-file}"
file = "$dir/invocations.ndjson"
TOML
if [ -n "${OTLP:-}" ]; then
  printf '[tracing]\notlp_endpoint = "http://127.0.0.1:%s"\notlp_protocol = "%s"\n' "$up" "$OTLP" >>"$dir/meridian.toml"
fi
export AWS_ACCESS_KEY_ID=AKIDPEERSBENCH AWS_SECRET_ACCESS_KEY=peersbenchsecretkey AWS_EC2_METADATA_DISABLED=true
exec "$bin" serve --config "$dir/meridian.toml" --listen "127.0.0.1:$port"
