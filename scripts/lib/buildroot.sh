# The Buildroot release the MineBox tree targets (an LTS), pinned by its git commit: a
# clone of the tag must resolve to exactly this commit, so a moved tag cannot slip in.
# Used by scripts/build-image and scripts/check-buildroot.
# shellcheck disable=SC2034 # read by the scripts that source this file
BUILDROOT_VERSION=2026.02.3
BUILDROOT_COMMIT=679b9ead7620bbf193620d1ebf56f53c1764d37a
BUILDROOT_GIT=https://gitlab.com/buildroot.org/buildroot.git

# fetch_buildroot DIR: clone the pinned release into DIR (or reuse it) and verify it.
fetch_buildroot() {
  local dir=$1
  if [ ! -d "$dir/.git" ]; then
    git clone --quiet --depth 1 --branch "$BUILDROOT_VERSION" "$BUILDROOT_GIT" "$dir"
  fi
  local have
  have=$(git -C "$dir" rev-parse HEAD)
  if [ "$have" != "$BUILDROOT_COMMIT" ]; then
    echo "buildroot: $dir is at $have, expected $BUILDROOT_VERSION = $BUILDROOT_COMMIT; refusing to build" >&2
    return 1
  fi
}
