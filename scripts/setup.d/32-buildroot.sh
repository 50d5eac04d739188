# scripts/check-buildroot (CI: tests/checks.d/buildroot.sh): Buildroot's own make and
# Kconfig (make, a C compiler, from 10-base.sh), the release tarball (xz), and the
# Python modules utils/check-package imports (python-magic, flake8), for the system python3.
need_apt make gcc xz-utils python3 python3-magic python3-flake8
