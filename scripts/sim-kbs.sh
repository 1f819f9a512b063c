# Sourced by scripts and benchmarks that need a local KBS trusting a fresh
# sim platform (development only: sim gives no protection).
#
#   start_sim_kbs COCOON WORK [SERVER_TOML [MORE_TOML]]
#                                  # sim platform in WORK/sim, KBS on a free
#                                  # loopback port; sets kbs_pid, kbs (URL),
#                                  # exports COCOON_KBS_URL, COCOON_KBS_ADMIN_KEY;
#                                  # SERVER_TOML: extra lines of [server],
#                                  # MORE_TOML: extra tables (e.g. [log])
#   register_workload COCOON RV IMAGE_KEY   # reference values + image key
#
# The caller kills "$kbs_pid" when done.

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

start_sim_kbs() {
  local cocoon=$1 work=$2 server_toml=${3:-} more_toml=${4:-} port
  "$cocoon" sim init "$work/sim" >/dev/null
  "$cocoon" kbs keygen-admin --out "$work/admin.pem" >/dev/null
  "$cocoon" kbs keygen-kek >"$work/kek.hex"
  port=$(free_port)
  cat >"$work/kbs.toml" <<TOML
[server]
listen = "127.0.0.1:$port"
$server_toml
[attestation]
allow_sim = true
collateral = ["sim/root.pem"]
[store]
path = "kbs.redb"
kek_file = "kek.hex"
[admin]
public_keys = ["admin.pem.pub"]
$more_toml
TOML
  "$cocoon" kbs serve --config "$work/kbs.toml" >"$work/kbs.log" 2>&1 &
  kbs_pid=$!
  kbs="http://127.0.0.1:$port"
  for _ in $(seq 100); do curl -fs "$kbs/health" >/dev/null && break; sleep 0.1; done
  if ! curl -fs "$kbs/health" >/dev/null; then
    echo "the KBS did not start; its log:" >&2
    cat "$work/kbs.log" >&2
    return 1
  fi
  export COCOON_KBS_URL=$kbs COCOON_KBS_ADMIN_KEY=$work/admin.pem
}

register_workload() {
  local cocoon=$1 rv=$2 key=$3
  "$cocoon" kbs reference-values add "$rv"
  "$cocoon" kbs resource put "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["resources"][0])' "$rv")" "$key"
}
