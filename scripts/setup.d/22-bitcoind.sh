# Bitcoin Core (../shared/peers/bin/bitcoind, built with ZMQ) links libzmq.so.5: the tests
# that run a real Core regtest node (minebox_regtest::Core) need it installed.
need_apt libzmq5
