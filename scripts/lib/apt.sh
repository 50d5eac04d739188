# Shared by the setup steps: collect Debian packages first, install them in one apt run.
# A step calls `need_apt pkg...`; scripts/setup calls apt_flush at the end, and a step
# that needs its packages at once calls apt_flush itself.
MINEBOX_APT_WANT=()
need_apt() {
  local p
  for p in "$@"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
      MINEBOX_APT_WANT+=("$p")
    fi
  done
}
apt_flush() {
  [ ${#MINEBOX_APT_WANT[@]} -eq 0 ] && return 0
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "setup: apt-get install ${MINEBOX_APT_WANT[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${MINEBOX_APT_WANT[@]}" >/dev/null
  MINEBOX_APT_WANT=()
}
