#!/bin/bash
# Build the lab's initramfs: busybox-static, the 9p/virtio modules of the guest kernel (in
# modprobe's load order) and guest/init. Usage: mkinitramfs.sh KVER OUT.cpio.gz
set -euo pipefail
kver=$1 out=$2
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
[[ -x /bin/busybox ]] || { echo "mkinitramfs: /bin/busybox missing: apt-get install busybox-static" >&2; exit 2; }
[[ -d /lib/modules/$kver ]] || { echo "mkinitramfs: /lib/modules/$kver missing: apt-get install linux-image-amd64" >&2; exit 2; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/lab-initrd.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp"/{bin,proc,sys,dev,host,modules}
cp /bin/busybox "$tmp/bin/busybox"
for a in sh mount umount insmod mkdir chroot sleep cat echo mknod poweroff ls; do
    ln -s busybox "$tmp/bin/$a"
done
# Load order from modprobe; keep the first occurrence of each module.
modprobe -S "$kver" -a --show-depends 9pnet_virtio 9p virtio_pci virtio_blk virtio_net |
    awk '$1 == "insmod" && !seen[$2]++ { print $2 }' > "$tmp/order.full"
: > "$tmp/modules/order"
while read -r ko; do
    base=$(basename "$ko")
    case $ko in
    *.ko) cp "$ko" "$tmp/modules/$base" ;;
    *.ko.xz) xz -dc "$ko" > "$tmp/modules/${base%.xz}"; base=${base%.xz} ;;
    *.ko.zst) zstd -qdc "$ko" > "$tmp/modules/${base%.zst}"; base=${base%.zst} ;;
    *) echo "mkinitramfs: unexpected module file $ko" >&2; exit 2 ;;
    esac
    echo "/modules/$base" >> "$tmp/modules/order"
done < "$tmp/order.full"
rm "$tmp/order.full"
install -m 0755 "$here/guest/init" "$tmp/init"
(cd "$tmp" && find . | cpio -o -H newc --quiet | gzip -1) > "$out.tmp"
mv "$out.tmp" "$out"
