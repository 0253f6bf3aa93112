#!/usr/bin/env bash
# pop3d and Dovecot side by side (issue 5): builds release, installs Dovecot if missing, and
# runs Benchmarks/compare.py, which creates the data, starts each server in turn pinned to
# core 0 and pop3bench on core 1, and prints one markdown table.
#
#   Benchmarks/compare.sh [--runs N] [--smoke] [--servers "pop3d dovecot [minimal] [pop3d-base]"] [--out FILE]
#                         [--base-bin PATH]   (the pop3d run as pop3d-base: before/after in one run)
#                         [--only "huge Maildir,huge2 Maildir"]   (those steps only: the login rows)
#
# COMPARE_POP3D_BIN=/path/to/pop3d runs that binary as pop3d (an older build, for before/after).
# Needs root (Dovecot drops privileges to the `pop3bench` user that owns the data; /proc of
# every server process is read for PSS and CPU). Never starts the system's Dovecot service.
set -euo pipefail
cd "$(dirname "$0")/.."

servers="pop3d dovecot"
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --runs|--out|--only|--base-bin) args+=("$1" "$2"); shift 2 ;;
    --servers) servers="$2"; shift 2 ;;
    --smoke) args+=("$1"); shift ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "compare.sh: unknown argument $1" >&2; exit 64 ;;
  esac
done

[ "$(id -u)" = 0 ] || { echo "compare.sh: run as root" >&2; exit 1; }
command -v taskset >/dev/null || { echo "compare.sh: taskset (util-linux) missing" >&2; exit 1; }
[ "$(nproc)" -ge 2 ] || { echo "compare.sh: needs 2 cores (server on 0, pop3bench on 1)" >&2; exit 1; }

echo "[compare] swift build -c release" >&2
swift build -c release >&2

# The pop3 binary, not the dovecot command: make test installs dovecot-core and dovecot-imapd
# for the UIDL tests (Tests/e2e/test_uidl_dovecot.py), without dovecot-pop3d.
if [[ " $servers " == *" dovecot "* ]] && [ ! -x /usr/lib/dovecot/pop3 ]; then
  echo "[compare] installing dovecot-pop3d" >&2
  # policy-rc.d 101 keeps the package's postinst from starting the system's Dovecot service.
  policy=/usr/sbin/policy-rc.d
  created_policy=0
  if [ ! -e "$policy" ]; then printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod +x "$policy"; created_policy=1; fi
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dovecot-pop3d >&2 || status=$?
  [ "$created_policy" = 1 ] && rm -f "$policy"
  [ "${status:-0}" = 0 ] || { echo "compare.sh: apt-get install dovecot-pop3d failed" >&2; exit 1; }
fi
if ! id pop3bench >/dev/null 2>&1; then
  useradd --system --no-create-home --shell /usr/sbin/nologin pop3bench
fi

# 10,000 server sessions plus 10,000 client sockets, in two processes: each needs its own.
ulimit -n "$(ulimit -Hn)"
exec python3 Benchmarks/compare.py --servers "$servers" "${args[@]}"
