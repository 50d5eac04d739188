#!/usr/bin/env bash
# The fuzz targets in fuzz/ (docs/fuzzing.md) build, and each runs briefly from its committed
# corpus without a finding: the stratum line parser and a whole session, the settings file,
# the snapshot manifest and index, the update channel manifest, payout addresses, and the
# Raspberry Pi Imager customisation script. New inputs found go to a scratch directory, not
# into the committed corpus; a crash is copied to fuzz/artifacts/<target>/ with the command
# that reproduces it.
#
# CI has the stable toolchain only: cargo-fuzz's nightly flags are allowed by RUSTC_BOOTSTRAP=1.
# No sanitizer: the code under test is safe Rust (and shell); AddressSanitizer works on stable
# (its runtime ships with the x86_64 std) but halves the executions a short run gets.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root/fuzz"
export RUSTC_BOOTSTRAP=1 CARGO_TERM_COLOR=never
secs=${MINEBOX_FUZZ_SECS:-10}
flags=(--sanitizer none --codegen-units 16)
command -v cargo-fuzz >/dev/null || { echo "fuzz: cargo-fuzz missing; run scripts/setup" >&2; exit 1; }

# The targets are formatted as the workspace is (cargo fmt in rust-style.sh does not see fuzz/).
rustfmt --check --edition 2021 --config-path "$root/rustfmt.toml" fuzz_targets/*.rs || { echo "fuzz: FAIL: rustfmt fuzz/fuzz_targets" >&2; exit 1; }

scratch=$(mktemp -d); trap 'rm -rf "$scratch"' EXIT
start=$SECONDS
if ! cargo fuzz build "${flags[@]}" >"$scratch/build.log" 2>&1; then
  grep -v '^ *\(Compiling\|Downloaded\|Downloading\)' "$scratch/build.log" | tail -n 60 >&2
  echo "fuzz: FAIL: build" >&2
  exit 1
fi
grep -q '^name = "libfuzzer-sys"' Cargo.lock || { echo "fuzz: FAIL: fuzz/Cargo.lock lacks libfuzzer-sys" >&2; exit 1; }
# Not --locked: a dependency added to a service crate is resolved here too (the pins already
# in fuzz/Cargo.lock are kept); say so, so that the lock file is committed with it.
git -C "$root" diff --quiet -- fuzz/Cargo.lock || echo "fuzz: note: fuzz/Cargo.lock changed (a service crate's dependencies did); commit it"
echo "fuzz: built in $((SECONDS - start)) s"

failed=()
for target in $(cargo fuzz list); do
  mkdir -p "$scratch/$target" "$root/fuzz/artifacts/$target"
  log=$scratch/$target.log
  # A session is a sequence of steps: let inputs be long from the start (libFuzzer otherwise
  # grows the length limit slowly, and a short run stays with sessions of a step or two).
  extra=()
  [ "$target" = stratum_session ] && extra=(-len_control=0 -max_len=2048)
  # -timeout: one input taking this long is a hang; -rss_limit_mb: the box has 4-8 GB.
  # -seed: a fixed mutation sequence, so a red check means the code changed, not that this
  # run was luckier than the last (MINEBOX_FUZZ_SEED=0 picks a random one, for longer runs).
  if cargo fuzz run "${flags[@]}" "$target" "$scratch/$target" "corpus/$target" -- \
      -max_total_time="$secs" -seed="${MINEBOX_FUZZ_SEED:-1}" -timeout=25 -rss_limit_mb=2048 \
      -artifact_prefix="$root/fuzz/artifacts/$target/" -print_final_stats=1 "${extra[@]}" >"$log" 2>&1; then
    done_line=$(grep -o 'Done [0-9]* runs in [0-9]* second' "$log" | tail -n1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n1)
    echo "fuzz: $target: ok, ${done_line#Done }s, ${cov:-cov: ?}, corpus $(find "corpus/$target" -type f | wc -l) + $(find "$scratch/$target" -type f | wc -l) new"
  else
    failed+=("$target")
    echo "fuzz: $target: FAIL" >&2
    grep -E -A1 'panicked|ERROR|SUMMARY|Test unit written' "$log" | head -n 20 >&2 || tail -n 40 "$log" >&2
    echo "fuzz: reproduce: (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run ${flags[*]} $target fuzz/artifacts/$target/<file>)" >&2
  fi
done
echo "fuzz: all targets in $((SECONDS - start)) s"
[ "${#failed[@]}" -eq 0 ] || { echo "fuzz: FAIL: ${failed[*]}" >&2; exit 1; }
