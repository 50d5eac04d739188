# Real peers for the snapshot tests: nginx serves published trees, the stock minisign tool
# checks our signatures, zstd and curl run the naive pipeline the benchmark compares with.
need_apt nginx-light minisign zstd curl openssl time tar
