#!/usr/bin/env bash
# Runs shellcheck on every shell script in the repository: *.sh files and anything whose first
# line names sh or bash (scripts/, buildroot-external/, tests/). Sourced fragments without a
# shebang (scripts/setup.d, scripts/lib) are checked as bash, which is what sources them.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
command -v shellcheck >/dev/null || { echo "shellcheck: not installed; run scripts/setup" >&2; exit 1; }
if git rev-parse --git-dir >/dev/null 2>&1; then
  mapfile -t files < <(git ls-files --cached --others --exclude-standard)
else
  mapfile -t files < <(find . -type f -not -path './target*' -not -path './node_modules/*' -printf '%P\n')
fi
scripts=()
for f in "${files[@]}"; do
  [ -f "$f" ] || continue
  case "$f" in node_modules/*|target*/*|buildroot/*.mk|*.mk|fuzz/corpus/*) continue ;; esac
  if [[ "$f" == *.sh ]] || head -n1 "$f" 2>/dev/null | grep -Eq '^#!.*(/|env )(ba)?sh\b'; then
    scripts+=("$f")
  fi
done
[ ${#scripts[@]} -gt 0 ] || { echo "shellcheck: no scripts found" >&2; exit 1; }
status=0
for f in "${scripts[@]}"; do
  opts=(-x -P SCRIPTDIR)
  head -n1 "$f" | grep -q '^#!' || opts+=(-s bash)
  shellcheck "${opts[@]}" "$f" || status=1
done
echo "shellcheck: ${#scripts[@]} scripts checked"
exit $status
