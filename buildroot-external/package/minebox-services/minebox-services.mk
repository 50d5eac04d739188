################################################################################
#
# minebox-services
#
################################################################################

MINEBOX_SERVICES_VERSION = local
MINEBOX_SERVICES_SITE = $(BR2_EXTERNAL_MINEBOX_PATH)/..
MINEBOX_SERVICES_SITE_METHOD = local
MINEBOX_SERVICES_LICENSE = MIT or Apache-2.0
MINEBOX_SERVICES_OVERRIDE_SRCDIR_RSYNC_EXCLUSIONS = \
	--exclude /target --exclude '/target-*' --exclude node_modules \
	--exclude /out --exclude /.cache --exclude /tests/artifacts --exclude '*.img' --exclude '*.img.xz'

MINEBOX_SERVICES_BINARIES = \
	minebox-stratum \
	minebox-supervisor \
	minebox-snapshot-agent \
	minebox-status \
	minebox-updater \
	minebox-tryboot

MINEBOX_SERVICES_CARGO_BUILD_OPTS = $(addprefix -p ,$(MINEBOX_SERVICES_BINARIES))

# A local site skips Buildroot's download step, and with it the cargo vendoring that
# lets the build run --offline: vendor here, after the sources are copied in, into the
# shared cargo home Buildroot uses for every cargo package.
define MINEBOX_SERVICES_VENDOR_CRATES
	cd $(@D) && \
		$(HOST_MAKE_ENV) CARGO_HOME=$(BR_CARGO_HOME) \
		cargo vendor --locked --versioned-dirs VENDOR > $(@D)/vendor-config.toml
	mkdir -p $(@D)/.cargo
	mv $(@D)/vendor-config.toml $(@D)/.cargo/config.toml
endef
MINEBOX_SERVICES_POST_RSYNC_HOOKS += MINEBOX_SERVICES_VENDOR_CRATES

# A virtual workspace has no single crate for `cargo install`: copy the binaries.
define MINEBOX_SERVICES_INSTALL_TARGET_CMDS
	$(foreach b,$(MINEBOX_SERVICES_BINARIES),\
		$(INSTALL) -D -m 0755 \
			$(@D)/target/$(RUSTC_TARGET_NAME)/$(if $(BR2_ENABLE_DEBUG),debug,release)/$(b) \
			$(TARGET_DIR)/usr/bin/$(b)
	)
endef

$(eval $(cargo-package))
