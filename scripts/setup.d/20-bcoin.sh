# bcoin 1.0.2 from the npm registry: the real regtest node the tests mine against.
# --omit=optional plus the leveldown override in package.json keep it to prebuilt parts.
if [ ! -x "$MINEBOX_ROOT/node_modules/bcoin/bin/node" ] || [ "$MINEBOX_ROOT/package-lock.json" -nt "$MINEBOX_ROOT/node_modules/.package-lock.json" ]; then
  command -v npm >/dev/null || { need_apt nodejs npm; apt_flush; }
  (cd "$MINEBOX_ROOT" && npm ci --omit=optional --no-audit --no-fund --loglevel=error)
fi
