# The status page's end-to-end tests: Debian's Chromium, driven by playwright-core (npm,
# pinned in package.json; it never downloads a browser of its own), and schemathesis
# (PyPI) fuzzing the API from its OpenAPI document.
need_apt chromium fonts-dejavu-core
if ! python3 -c "import schemathesis" 2>/dev/null; then
  python3 -m pip install --quiet --disable-pip-version-check "schemathesis>=4.30,<5"
fi
