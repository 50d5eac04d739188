# Real peers for the snapshot tests: nginx serves published trees, the stock minisign tool
# checks our signatures, zstd and curl run the naive pipeline the benchmark compares with.
need_apt nginx-light minisign zstd curl openssl time tar
# moto's S3 server (PyPI): a real S3-compatible endpoint for the publisher's cloud target.
if ! python3 -c "import moto.server" 2>/dev/null; then
  python3 -m pip install --quiet --disable-pip-version-check "moto[server]>=5"
fi
