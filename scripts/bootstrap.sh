#!/usr/bin/env bash
# Install whatever is missing, then run the platform or the tests.
#
#   bash scripts/bootstrap.sh run [ARGS]   # set up, start the platform and run the demo on it
#   bash scripts/bootstrap.sh test [ARGS]  # set up and run lint + the whole test suite
#   bash scripts/bootstrap.sh setup        # only install
#
# Idempotent: Debian packages are installed only when a command is missing, the Python
# environment is rebuilt only when its lock file changed, JVM jars come from the Maven cache.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="$ROOT/.venv"
PYTHON_VERSION="${LAMBDAWATCH_PYTHON:-3.11}"

log() { printf '\033[1;34m==>\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31merror:\033[0m %s\n' "$*" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@";
  elif command -v sudo >/dev/null; then sudo "$@";
  else die "need root to run: $* (install the packages yourself or use sudo)"; fi
}

have_postgres_server() { compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null; }

install_debian_packages() {
  local wanted=()
  have_postgres_server || wanted+=(postgresql postgresql-contrib)
  command -v redis-server >/dev/null || wanted+=(redis-server)
  command -v mvn >/dev/null || wanted+=(maven)
  command -v java >/dev/null || wanted+=(openjdk-17-jre-headless)
  command -v curl >/dev/null || wanted+=(curl)
  # the browser tests drive Debian's chromium through Playwright (no browser download)
  command -v chromium >/dev/null || wanted+=(chromium)
  if [ "${#wanted[@]}" -gt 0 ]; then
    command -v apt-get >/dev/null || die "missing ${wanted[*]} and no apt-get to install them"
    log "installing Debian packages: ${wanted[*]}"
    as_root apt-get update -qq
    # Debian's postgresql package may start its own system cluster on 5432; lambdawatch never
    # uses it: it runs a private cluster under var/ on POSTGRES_PORT.
    as_root env DEBIAN_FRONTEND=noninteractive \
      apt-get install -y -qq --no-install-recommends "${wanted[@]}" >/dev/null
  fi
  if [ "$(id -u)" -eq 0 ] && ! id postgres >/dev/null 2>&1; then
    log "creating the postgres service user"
    useradd --system --home-dir /var/lib/postgresql --shell /usr/sbin/nologin postgres
  fi
}

ensure_uv() {
  if command -v uv >/dev/null; then UV="$(command -v uv)"; return; fi
  if [ -x "$HOME/.local/bin/uv" ]; then UV="$HOME/.local/bin/uv"; return; fi
  log "installing uv (Python package manager) from PyPI"
  python3 -m pip install --quiet --user uv 2>/dev/null \
    || python3 -m pip install --quiet --break-system-packages --user uv
  UV="$HOME/.local/bin/uv"
  [ -x "$UV" ] || UV="$(python3 -c 'import sysconfig;print(sysconfig.get_path("scripts"))')/uv"
  [ -x "$UV" ] || die "uv could not be installed"
}

# build_env DIR LOCKFILE LABEL [with-project|without-project]: a virtual environment from a
# compiled lock file (plus this package, editable, unless told otherwise), rebuilt only when the
# lock file or pyproject.toml changed.
build_env() {
  local venv="$1" lock="$2" label="$3" project="${4:-with-project}"
  local stamp="$venv/.lambdawatch-stamp" digest
  digest="$(cat "$lock" pyproject.toml | sha256sum | cut -c1-16)"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$digest" ]; then return; fi
  log "building the $label Python environment ($(basename "$venv"))"
  [ -x "$venv/bin/python" ] || "$UV" venv --quiet --python "$PYTHON_VERSION" "$venv"
  "$UV" pip install --quiet --python "$venv/bin/python" -r "$lock"
  if [ "$project" = with-project ]; then
    "$UV" pip install --quiet --python "$venv/bin/python" --no-deps -e .
  fi
  echo "$digest" > "$stamp"
}

install_python_envs() {
  build_env "$VENV" requirements.txt core
  # Airflow's pins conflict with Superset's, so each has an environment of its own.
  build_env "$ROOT/.venv-airflow" requirements/airflow.txt Airflow
  # Superset runs only its own code and superset/*.py, never lambdawatch's package.
  build_env "$ROOT/.venv-superset" requirements/superset.txt Superset without-project
}

install_jvm_artifacts() {
  log "resolving JVM artifacts (Kafka) from Maven Central into the cache"
  "$VENV/bin/lambdawatch" fetch-jars
}

setup() {
  install_debian_packages
  ensure_uv
  install_python_envs
  install_jvm_artifacts
}

run_tests() {
  log "lint"
  "$VENV/bin/ruff" check .
  "$VENV/bin/ruff" format --check .
  log "tests"
  set +e
  "$VENV/bin/python" -m pytest "$@"
  local status=$?
  set -e
  if [ "$status" -eq 5 ]; then die "pytest collected no tests: that is a failure, not a pass"; fi
  return "$status"
}

command="${1:-run}"
shift || true
case "$command" in
  setup) setup ;;
  run) setup; exec "$VENV/bin/lambdawatch" demo "$@" ;;
  test) setup; run_tests "$@" ;;
  *) die "unknown command '$command' (expected run, test or setup)" ;;
esac
