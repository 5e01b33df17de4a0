#!/usr/bin/env bash
# Builds the consul_rs wheel: `maturin build --release`, one abi3 wheel for every CPython >= 3.10,
# tagged manylinux (maturin audits the library's glibc symbol versions and refuses a wheel PyPI
# would refuse, `--compatibility pypi`). `pip install <wheel>` then needs no Rust.
#
#   python/build-wheel.sh [OUT_DIR]        # default OUT_DIR: dist/ under the repository root
#
# Needs Rust >= 1.85 (cargo), a C compiler, and Python >= 3.10 with venv (maturin is used from
# PATH, else installed from PyPI into a throwaway virtualenv). Prints the wheel's path last.
#
# Environment: CARGO_TARGET_DIR (default: the workspace's target/), CONSUL_RS_WHEEL_PROFILE
# (default release; the test suite builds its wheel with `dev`, the profile every test step shares,
# so the core is not compiled twice), MATURIN (a maturin binary), PYTHON (default python3).
set -euo pipefail
# -P: physical paths, so a python/ reached through a symlink still finds its repository.
root=$(cd -P "$(dirname "$0")/.." && pwd)
out=$(mkdir -p "${1:-$root/dist}" && cd "${1:-$root/dist}" && pwd)
profile=${CONSUL_RS_WHEEL_PROFILE:-release}
python=${PYTHON:-python3}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
maturin=${MATURIN:-}
if [ -z "$maturin" ] && command -v maturin >/dev/null; then maturin=maturin; fi
if [ -z "$maturin" ]; then
  echo "build-wheel: installing maturin into a temporary virtualenv" >&2
  "$python" -m venv "$tmp/venv"
  "$tmp/venv/bin/pip" install --quiet --disable-pip-version-check 'maturin>=1.16,<2'
  maturin="$tmp/venv/bin/maturin"
fi
if [ "$profile" = release ]; then profile_args=(--release); else profile_args=(--profile "$profile"); fi

echo "build-wheel: maturin build (cargo profile $profile; a first build compiles the whole Rust core)" >&2
# From python/, where pyproject.toml names the crate (bindings/python) and the module layout.
(cd "$root/python" && "$maturin" build "${profile_args[@]}" --compatibility pypi --interpreter "$python" \
  --out "$out") 2>&1 | tee "$tmp/build.log" >&2
# maturin's last words: "Built wheel for abi3 Python ≥ 3.10 to <path>".
wheel=$(sed -n 's/.*Built wheel.* to \(.*\.whl\).*/\1/p' "$tmp/build.log" | tail -1)
[ -f "$wheel" ] || { echo "build-wheel: maturin reported no wheel" >&2; exit 1; }
echo "$wheel"
