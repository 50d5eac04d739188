################################################################################
#
# bitcoin-cash-node
#
################################################################################

# v28.0.1. The download is pinned by git commit id, which names its content; check it
# against the release tag (git ls-remote ... refs/tags/v28.0.1^{}) when bumping.
BITCOIN_CASH_NODE_VERSION = 631badbf64766fa8c2d38f099e937f8c6cb19014
BITCOIN_CASH_NODE_SITE = https://gitlab.com/bitcoin-cash-node/bitcoin-cash-node.git
BITCOIN_CASH_NODE_SITE_METHOD = git
BITCOIN_CASH_NODE_LICENSE = MIT
BITCOIN_CASH_NODE_LICENSE_FILES = COPYING
BITCOIN_CASH_NODE_CPE_ID_VENDOR = bitcoincashnode
BITCOIN_CASH_NODE_SUPPORTS_IN_SOURCE_BUILD = NO
BITCOIN_CASH_NODE_DEPENDENCIES = host-pkgconf host-python3 boost libevent openssl zeromq
BITCOIN_CASH_NODE_CONF_OPTS = \
	-DBUILD_BITCOIN_WALLET=OFF \
	-DBUILD_BITCOIN_QT=OFF \
	-DBUILD_BITCOIN_SEEDER=OFF \
	-DBUILD_BITCOIN_ZMQ=ON \
	-DENABLE_UPNP=OFF \
	-DENABLE_NATPMP=OFF \
	-DENABLE_MAN=OFF \
	-DENABLE_QRCODE=OFF \
	-DENABLE_BIP70=OFF \
	-DBUILD_BENCH=OFF \
	-DBUILD_TESTS=OFF

# Beside Bitcoin Core's bitcoind, under names that say which chain they follow.
define BITCOIN_CASH_NODE_INSTALL_TARGET_CMDS
	$(INSTALL) -D -m 0755 $(@D)/buildroot-build/src/bitcoind \
		$(TARGET_DIR)/usr/bin/bitcoincashd
	$(INSTALL) -D -m 0755 $(@D)/buildroot-build/src/bitcoin-cli \
		$(TARGET_DIR)/usr/bin/bitcoincash-cli
endef

$(eval $(cmake-package))
