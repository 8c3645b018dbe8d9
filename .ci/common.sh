# Sourced by every .ci script after it has cd'd to the repository root: strict mode,
# the settings every step shares, and `step`, which prints a step's name and the
# seconds since the run began (.ci/test's start when it runs the script, else the
# script's own start).
set -euo pipefail

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
export RUST_BACKTRACE=1
export SHMLINK_CI_STARTED="${SHMLINK_CI_STARTED:-$(date +%s)}"
step() { printf '\n==> %s  [%ss]\n' "$*" "$(($(date +%s) - SHMLINK_CI_STARTED))"; }
