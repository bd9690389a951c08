#!/usr/bin/env bash
# Build the Debian package mmp-ha (one .deb) and print its path on stdout (logs go to stderr).
#
#   scripts/build-deb.sh [--profile release|dev|PROFILE]     (default release)
#
# The package is assembled in a staging tree (target/deb/PROFILE/root) and built with
# `dpkg-deb --build --root-owner-group`. We chose dpkg-deb over cargo-deb: no extra tool to
# compile in CI (dpkg-dev is there anyway), and the control file and maintainer scripts are
# plain files in scripts/deb/ that a reviewer reads as they are installed.
#
# What is in it: the four binaries (stripped), the OCF agents of provider mmp-ha as relative
# symlinks to the binaries that dispatch on argv[0], mmpd@.service, the man pages (gzip -9n),
# /usr/share/doc/mmp-ha (README, BENCHMARKS, copyright, changelog, examples) and an empty
# /etc/mmpd. No conffile and no maintainer script that enables, starts, stops or restarts a
# unit: Pacemaker owns the services, and an upgrade that stopped a running mmpd would make it
# write CLEAN under a live mount (see scripts/deb/postinst). scripts/test-deb.sh checks all of
# this in a Debian 12 chroot.
#
# Version: the top entry of scripts/deb/changelog (0.1.0-1), whose upstream part must be the
# workspace version. Depends: dpkg-shlibdeps on the binaries, plus mount.
set -euo pipefail
umask 022

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
deb_src=$repo/scripts/deb
profile=release
while [[ $# -gt 0 ]]; do
    case $1 in
    --profile) profile=$2; shift 2 ;;
    -h | --help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "build-deb.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

# Binaries: /usr/sbin for the administrator's tools and the daemon, /usr/bin for the tester.
SBIN=(mmp-tool mmpd lockd-recover)
BIN=(lock-torture)
# OCF agents: TYPE:BINARY. Pacemaker runs /usr/lib/ocf/resource.d/mmp-ha/TYPE; the binary
# knows which agent it is from argv[0].
AGENTS=(mmp-fs:mmp-tool nfs-grace:lockd-recover nfs-locks:lockd-recover)
OCF_DIR=usr/lib/ocf/resource.d/mmp-ha
DOC_DIR=usr/share/doc/mmp-ha

log() { echo "build-deb: $*" >&2; }
die() { echo "build-deb.sh: $*" >&2; exit 1; }

for c in cargo dpkg-deb dpkg-parsechangelog strip gzip jq; do
    command -v "$c" > /dev/null || die "$c not found (packages: dpkg-dev binutils gzip jq; cargo from rustup)"
done

# The version, checked against the workspace; SOURCE_DATE_EPOCH from the changelog, so that
# the man pages' and the archive's timestamps do not depend on the build time.
version=$(dpkg-parsechangelog -l "$deb_src/changelog" -S Version)
export SOURCE_DATE_EPOCH
SOURCE_DATE_EPOCH=$(dpkg-parsechangelog -l "$deb_src/changelog" -S Timestamp)
meta=$(cd "$repo" && cargo metadata --no-deps --format-version 1 --locked)
workspace_version=$(jq -r '.packages[] | select(.name == "mmp-tool") | .version' <<< "$meta")
[[ ${version%-*} == "$workspace_version" ]] ||
    die "scripts/deb/changelog is at $version but the workspace at $workspace_version: add a changelog entry"
maintainer=$(dpkg-parsechangelog -l "$deb_src/changelog" -S Maintainer)
arch=$(dpkg --print-architecture)

target=${CARGO_TARGET_DIR:-$repo/target}
bin_dir=$target/$([[ $profile == dev ]] && echo debug || echo "$profile")
out=$target/deb/$profile
root=$out/root
deb=$out/mmp-ha_${version}_$arch.deb

log "cargo build --profile $profile --locked"
(cd "$repo" && cargo build -q --locked --profile "$profile" \
    -p mmp-tool -p mmpd -p lockd-recover -p lock-torture) || die "cargo build failed"

rm -rf "$root"
mkdir -p "$root/DEBIAN"

# Binaries, stripped (the release profile keeps line tables for profiling; the package does
# not ship them).
install_binary() {
    local name=$1 dir=$2
    mkdir -p "$root/$dir"
    strip --remove-section=.comment --remove-section=.note -o "$root/$dir/$name" "$bin_dir/$name"
    chmod 0755 "$root/$dir/$name"
}
for b in "${SBIN[@]}"; do install_binary "$b" usr/sbin; done
for b in "${BIN[@]}"; do install_binary "$b" usr/bin; done

# Agents: relative links (Debian policy 10.5: a link within /usr is relative), which also
# resolve inside a tree extracted with dpkg-deb -x (the lab's).
mkdir -p "$root/$OCF_DIR"
for a in "${AGENTS[@]}"; do
    ln -s "../../../../sbin/${a#*:}" "$root/$OCF_DIR/${a%%:*}"
done

# The unit runs the binary where the package puts it.
unit=$repo/mmpd/mmpd@.service
grep -qx 'ExecStart=/usr/sbin/mmpd .*' "$unit" ||
    die "$unit: ExecStart does not run /usr/sbin/mmpd, where the package installs it"
install -D -m 0644 "$unit" "$root/lib/systemd/system/mmpd@.service"

# Man pages, by section.
for page in "$repo"/man/*.[1-9]; do
    section=${page##*.}
    mkdir -p "$root/usr/share/man/man$section"
    gzip -9n -c "$page" > "$root/usr/share/man/man$section/${page##*/}.gz"
done

# Documentation (compressed like dh_compress does for files this size; copyright never is).
mkdir -p "$root/$DOC_DIR/examples"
gzip -9n -c "$repo/README.md" > "$root/$DOC_DIR/README.md.gz"
gzip -9n -c "$repo/BENCHMARKS.md" > "$root/$DOC_DIR/BENCHMARKS.md.gz"
gzip -9n -c "$deb_src/changelog" > "$root/$DOC_DIR/changelog.Debian.gz"
install -m 0644 "$deb_src/copyright" "$root/$DOC_DIR/copyright"
install -m 0644 "$deb_src"/examples/* "$root/$DOC_DIR/examples/"

# mmpd's configuration directory, empty: mmpd@NAME starts only with /etc/mmpd/NAME.toml.
mkdir -p "$root/etc/mmpd"

# Depends: the shared libraries the binaries link (dpkg-shlibdeps wants a debian/control to
# read, so it runs in a scratch directory; a hand list if it fails), plus mount (mmp-tool mount).
shlib_depends() {
    local scratch line
    scratch=$(mktemp -d)
    mkdir "$scratch/debian"
    printf 'Source: mmp-ha\n\nPackage: mmp-ha\nArchitecture: any\n' > "$scratch/debian/control"
    line=$(cd "$scratch" && dpkg-shlibdeps -O "${@/#/$root/}" 2> /dev/null) || line=
    rm -rf "$scratch"
    line=${line#shlibs:Depends=}
    if [[ -z $line ]]; then
        # What the binaries link (readelf -d): libc, libblkid (the blkid crate), libgcc_s.
        line="libc6, libblkid1, libgcc-s1"
        log "dpkg-shlibdeps gave nothing: Depends from the hand list ($line)"
    fi
    echo "$line"
}
binaries=()
for b in "${SBIN[@]}"; do binaries+=("usr/sbin/$b"); done
for b in "${BIN[@]}"; do binaries+=("usr/bin/$b"); done
depends="$(shlib_depends "${binaries[@]}"), mount"

installed_size=$(du -sk --apparent-size --exclude=DEBIAN "$root" | cut -f1)
sed -e "s|@VERSION@|$version|" -e "s|@ARCH@|$arch|" -e "s|@MAINTAINER@|$maintainer|" \
    -e "s|@INSTALLED_SIZE@|$installed_size|" -e "s|@DEPENDS@|$depends|" \
    "$deb_src/control.in" > "$root/DEBIAN/control"
install -m 0755 "$deb_src/postinst" "$deb_src/postrm" "$root/DEBIAN/"
(cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z |
    xargs -0 md5sum) > "$root/DEBIAN/md5sums"
chmod 0644 "$root/DEBIAN/md5sums"

dpkg-deb --build --root-owner-group -Zxz "$root" "$deb" > /dev/null
log "$deb ($(du -h "$deb" | cut -f1); Depends: $depends)"
echo "$deb"
