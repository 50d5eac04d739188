# pyzmq (bundles libzmq, the library bitcoind publishes with): a real ZMQ publisher for the
# tests of MineBox's hashblock subscriber.
if ! python3 -c "import zmq" 2>/dev/null; then
  python3 -m pip install --quiet --disable-pip-version-check "pyzmq>=25"
fi
