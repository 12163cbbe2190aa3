#!/usr/bin/env bash
# Puts three simulated CALIN LoRaWAN meters on the demo grid of a running tiamat (for `just run`
# with meter-sim): an online gateway with meter-sim's gateway id, an energised grid, and three
# customers with a connection and a meter each. Idempotent: does nothing if the meters exist.
#
#   scripts/demo-meters.sh BASE_URL API_KEY GRID_ID
set -euo pipefail
base=$1 key=$2 grid=$3
api="$base/api/v1"
serials=(47003333623 47003333624 47003333625)

call() { # METHOD PATH [BODY]: prints the answer; fails on an HTTP error
    local method=$1 path=$2 body=${3:-}
    if [ -n "$body" ]; then
        curl -fsS -X "$method" -H "X-API-Key: $key" -H 'content-type: application/json' -d "$body" "$api$path"
    else
        curl -fsS -X "$method" -H "X-API-Key: $key" "$api$path"
    fi
}
id_of() { grep -oE '"id":[0-9]+' | head -n1 | cut -d: -f2; }

existing=$(call GET "/meters?grid_id=$grid&limit=100" || true)
if printf '%s' "$existing" | grep -q "\"${serials[0]}\""; then
    printf '%s' "$existing" | grep -oE '"id":[0-9]+,"organization_id"' | cut -d: -f2 | cut -d, -f1 | tr '\n' ' '
    exit 0
fi
gw=$(call POST /dcus '{"external_system":"CHIRPSTACK","external_reference":"0016c001f153a14c","communication_protocol":"CALIN_LORAWAN"}' | id_of)
call POST "/dcus/$gw/assign" "{\"grid_id\":$grid}" >/dev/null 2>&1 || true
call PUT /dcus/state "{\"states\":[{\"id\":$gw,\"is_online\":true}]}" >/dev/null
call PUT "/grids/$grid/state" '{"is_hps_on":true}' >/dev/null
now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
ids=()
for i in "${!serials[@]}"; do
    customer=$(call POST /customers "{\"grid_id\":$grid,\"full_name\":\"Demo customer $((i + 1))\"}" | id_of)
    connection=$(call POST /connections "{\"customer_id\":$customer}" | id_of)
    meter=$(call POST /meters "{\"external_system\":\"CALIN\",\"external_reference\":\"${serials[$i]}\",\"communication_protocol\":\"CALIN_LORAWAN\"}" | id_of)
    call POST "/meters/$meter/assign" "{\"connection_id\":$connection}" >/dev/null
    call PUT /meters/state "{\"states\":[{\"id\":$meter,\"last_seen_at\":\"$now\"}]}" >/dev/null
    ids+=("$meter")
done
echo "${ids[*]}"
