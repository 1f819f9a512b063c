#!/usr/bin/env bash
# Build real OCI/Docker test fixture images with tools other than cocoon
# (umoci, skopeo, GNU tar, debootstrap), so that cocoon's image reader is
# tested against images it did not write.  See docs/fixtures.md.
#
#   bash scripts/fixtures.sh [OUTLINK]
#
# The images go to ${COCOON_FIXTURE_CACHE:-/var/cache/cocoon/fixtures}/<key>/,
# where <key> is the first 16 hex digits of the SHA-256 of this file (the
# recipe).  A complete cache dir (it has a .complete marker) is reused as is;
# otherwise it is built in a temp dir beside it and renamed into place, so an
# interrupted run never leaves a half cache.  OUTLINK (default
# <repo>/target/fixtures) is then pointed at it and the dir is printed on
# stdout.  Progress goes to stderr, one line per stage.
#
# Needs root (mknod, chown, chroot, mount namespaces) and, for the debian
# images, HTTP access to deb.debian.org.
set -Eeuo pipefail
export LC_ALL=C TZ=UTC # stable sorting, dates and decimal points

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd -- "$SCRIPT_DIR/.." && pwd)
# Every file that defines the recipe.  The cache key is the SHA-256 of their
# contents concatenated in this order; with one file it is simply
# `sha256sum scripts/fixtures.sh | cut -c1-16`.
RECIPE_FILES=("$SCRIPT_DIR/fixtures.sh")

CACHE=${COCOON_FIXTURE_CACHE:-/var/cache/cocoon/fixtures}
DEBIAN_MIRROR=http://deb.debian.org/debian
DEBIAN_SUITE=bookworm

# Fixed timestamps (UTC) so the busybox images are byte-for-byte reproducible
# on one set of tool versions: every file created by a step gets that step's
# time (like tar --clamp-mtime), and history/config get the same.
T_L1=1704067200      # 2024-01-01  busybox layer 1
T_L2=1704153600      # 2024-01-02  busybox layer 2
T_L3=1704240000      # 2024-01-03  busybox layer 3 (GNU tar)
T_L4=1704326400      # 2024-01-04  busybox variant layers
T_DEB_BASE=1735689600  # 2025-01-01 debian base (also SOURCE_DATE_EPOCH)
T_DEB_APP=1735776000   # 2025-01-02 debian package layers
T_DEB_CLEAN=1735862400 # 2025-01-03 debian cleanup layers

BUSYBOX_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
# Applets that get a /bin symlink.  sh..httpd are what the tests rely on.
BUSYBOX_APPLETS=(sh ash ls cat echo sleep wget httpd env id pwd mkdir rm cp mv
	ln chmod chown touch grep sed head tail wc sort uname true false test
	ps kill vi hostname date stat find xargs tar gzip)

# ---------------------------------------------------------------- helpers --

NAME=fixtures
# shellcheck source=scripts/lib/cache.sh
. "$SCRIPT_DIR/lib/cache.sh"

iso() { date -u -d "@$1" +%Y-%m-%dT%H:%M:%SZ; }

rep() { # rep CHAR N: CHAR repeated N times
	local s
	printf -v s '%*s' "$2" ''
	printf '%s' "${s// /$1}"
}

recipe_key() {
	cat "${RECIPE_FILES[@]}" | sha256sum | cut -c1-16
}

# Set the mtime of everything under DIR that is newer than T to T (symlinks
# themselves, not their targets).  Files left from earlier steps keep their
# older time, so umoci's diff only sees what this step really changed.
clamp_mtimes() {
	local dir=$1 t=$2
	find "$dir" -newermt "@$t" -exec touch -h -d "@$t" {} +
}

# Install what is missing.  Tools are checked by command so that an
# up-to-date machine never waits for apt.
ensure_tools() {
	local -A pkg_of=(
		[umoci]=umoci [skopeo]=skopeo [debootstrap]=debootstrap
		[setfattr]=attr [getfattr]=attr [openssl]=openssl
		[python3]=python3 [tar]=tar [unshare]=util-linux [flock]=util-linux
		[zstd]=zstd
	)
	local missing=() cmd
	[[ $(id -u) == 0 ]] || die "must run as root (mknod, chown, chroot, mount)"
	for cmd in "${!pkg_of[@]}"; do
		command -v "$cmd" >/dev/null 2>&1 || missing+=("${pkg_of[$cmd]}")
	done
	# The static busybox is what goes into the image; the dynamic `busybox`
	# package would also provide /bin/busybox, so check the package itself.
	[[ $(dpkg-query -W -f='${Status}' busybox-static 2>/dev/null || true) == *'ok installed'* ]] ||
		missing+=(busybox-static)
	if ((${#missing[@]})); then
		mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
		stage "installing ${missing[*]} (apt-get)"
		# Some configured third-party sources may be unreachable; the
		# Debian ones are what matters, so a partial update is not fatal.
		apt-get update -qq >&2 || echo "fixtures: warning: apt-get update had errors" >&2
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			"${missing[@]}" >&2
	fi
}

skopeo_copy() { skopeo --insecure-policy copy --quiet "$@" >&2; }

# Digest of the manifest a tag points at in an OCI layout.
oci_digest() { # LAYOUT TAG
	python3 - "$1" "$2" <<-'PY'
		import json, sys
		idx = json.load(open(sys.argv[1] + "/index.json"))
		print(next(m["digest"] for m in idx["manifests"]
		           if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == sys.argv[2]))
	PY
}

# Paths of the layer blobs of a tag, base layer first, one per line.
oci_layer_blobs() { # LAYOUT TAG
	local d
	d=$(oci_digest "$1" "$2")
	python3 - "$1" "$d" <<-'PY'
		import json, sys
		lay, dig = sys.argv[1], sys.argv[2]
		m = json.load(open(f"{lay}/blobs/sha256/{dig.split(':')[1]}"))
		for l in m["layers"]:
		    print(f"{lay}/blobs/sha256/{l['digest'].split(':')[1]}")
	PY
}

# Layer media types of a tag, one per line.
oci_layer_types() { # LAYOUT TAG
	local d
	d=$(oci_digest "$1" "$2")
	python3 - "$1" "$d" <<-'PY'
		import json, sys
		lay, dig = sys.argv[1], sys.argv[2]
		for l in json.load(open(f"{lay}/blobs/sha256/{dig.split(':')[1]}"))["layers"]:
		    print(l["mediaType"])
	PY
}

# Uncompressed tar stream of a layer blob, whatever its compression.
blob_cat() {
	case $(head -c 4 "$1" | od -An -tx1 | tr -d ' ') in
	1f8b*) zcat "$1" ;;
	28b52ffd) zstd -dc "$1" ;;
	*) cat "$1" ;;
	esac
}

# Run a command chrooted into ROOT in a private mount namespace: /proc, a
# small /dev and the host's resolv.conf are mounted only inside it, so they
# vanish with the process even if this script is killed, and can never end
# up in a layer or be deleted through the rootfs.
chroot_run() { # ROOT CMD...
	local root=$1
	shift
	# shellcheck disable=SC2016 # expanded by the inner bash
	unshare --mount --propagation private -- bash -Eeuo pipefail -c '
		root=$1; shift
		mount -t proc proc "$root/proc"
		mount -t tmpfs -o mode=0755,size=16m devtmp "$root/dev"
		mknod -m 666 "$root/dev/null" c 1 3
		mknod -m 666 "$root/dev/zero" c 1 5
		mknod -m 666 "$root/dev/full" c 1 7
		mknod -m 666 "$root/dev/random" c 1 8
		mknod -m 666 "$root/dev/urandom" c 1 9
		mknod -m 666 "$root/dev/tty" c 5 0
		ln -s /proc/self/fd "$root/dev/fd"
		ln -s /proc/self/fd/0 "$root/dev/stdin"
		ln -s /proc/self/fd/1 "$root/dev/stdout"
		ln -s /proc/self/fd/2 "$root/dev/stderr"
		mount --bind /etc/resolv.conf "$root/etc/resolv.conf"
		exec chroot "$root" /usr/bin/env -i \
			PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
			HOME=/root LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive \
			SOURCE_DATE_EPOCH="$SOURCE_DATE_EPOCH" "$@"
	' chroot_run "$root" "$@"
}

# A canonical listing of a tree: type, mode, owner, link count, size,
# mtime (not for directories: umoci does not restore them reliably and they
# change whenever an entry is added), device numbers, symlink targets,
# hardlink groups, content hashes and all xattrs.
tree_listing() { # ROOT
	(
		cd "$1"
		find . -print0 | sort -z | xargs -0 stat -c '%n|%F|%a|%u:%g|%h|%s|%Y|%t:%T' |
			awk -F'|' -v OFS='|' '$2 == "directory" { $5 = "-"; $6 = "-"; $7 = "-" } { print }'
		find . -type l -printf '%p -> %l\n' | sort
		# hardlink groups: every path with the first (sorted) path of its inode
		find . ! -type d -links +1 -printf '%i %p\n' | sort -k2 |
			awk '!($1 in first) { first[$1] = $2 } { print "hardlink " $2 " = " first[$1] }'
		find . -type f -print0 | sort -z | xargs -0 -r sha256sum
		find . -print0 | sort -z | xargs -0 getfattr -h -d -m - 2>/dev/null || true
	)
}

# Unpack two tags with umoci and fail unless the trees are identical.
assert_same_tree() { # LAYOUT TAG_A TAG_B WORKDIR
	local lay=$1 a=$2 b=$3 w=$4 out
	rm -rf "$w/cmp-a" "$w/cmp-b"
	umoci unpack --image "$lay:$a" "$w/cmp-a" >&2
	umoci unpack --image "$lay:$b" "$w/cmp-b" >&2
	tree_listing "$w/cmp-a/rootfs" >"$w/cmp-a.list"
	tree_listing "$w/cmp-b/rootfs" >"$w/cmp-b.list"
	diff -u "$w/cmp-a.list" "$w/cmp-b.list" >&2 ||
		die "$lay:$a and $lay:$b unpack to different trees (see diff above)"
	# diff -r as a second opinion on contents; it reports every pair of
	# FIFOs as different, so those lines are dropped.
	out=$(diff -r --no-dereference "$w/cmp-a/rootfs" "$w/cmp-b/rootfs" |
		grep -v '^File .* is a fifo while file .* is a fifo$' || true)
	[[ -z $out ]] || die "diff -r $lay:$a $lay:$b: $out"
	rm -rf "$w/cmp-a" "$w/cmp-b" "$w/cmp-a.list" "$w/cmp-b.list"
}

# Fail unless the verbose GNU tar listing (or the raw bytes) of a layer blob
# match.  Listings are cached: each blob is decompressed once.
declare -A LISTING=()
expect_listing() { # BLOB ERE WHAT
	# (|| true: the umoci-insert layer is a truncated tar and GNU tar exits 2)
	[[ -v LISTING[$1] ]] ||
		LISTING[$1]=$(blob_cat "$1" | tar -tvv --xattrs --numeric-owner -f - 2>&1 || true)
	grep -qE "$2" <<<"${LISTING[$1]}" || die "layer $(basename "$1") lacks $3 (pattern: $2)"
}
expect_bytes() { # BLOB FIXED-STRING WHAT
	# not grep -q: an early exit would SIGPIPE the producer and trip pipefail
	blob_cat "$1" | grep -aF -- "$2" >/dev/null || die "layer $(basename "$1") lacks $3 ($2)"
}

# ---------------------------------------------------------------- busybox --

# Long path (> 255 chars, basename > 100) that needs a PAX path record.
LONG_DIR=usr/share/cocoon/long/$(rep a 60)/$(rep b 60)
LONG_FILE=$(rep c 110).txt
# Long basename for the GNU tar layer (././@LongLink).
GNU_LONG_FILE=$(rep g 120).txt

BUSYBOX_CONFIG=(
	--config.entrypoint /bin/sh --config.entrypoint -c
	--config.cmd "echo hello from busybox"
	--config.env "PATH=$BUSYBOX_PATH" --config.env FOO=bar
	--config.workingdir /
	--config.exposedports 8080/tcp
)

# Layer 1: a busybox-static rootfs plus one of each awkward entry type.
busybox_layer1() { # ROOTFS
	local r=$1 a applets
	applets=$'\n'$(/bin/busybox --list)$'\n'
	mkdir -p "$r"/{bin,dev,etc,home/app,proc,root,srv,sys,tmp,usr/share/cocoon,var}
	chmod 0700 "$r/root"
	chmod 1777 "$r/tmp" # sticky
	install -m 0755 /bin/busybox "$r/bin/busybox"
	for a in "${BUSYBOX_APPLETS[@]}"; do
		[[ $applets == *$'\n'"$a"$'\n'* ]] || die "busybox has no applet $a"
		ln -s busybox "$r/bin/$a" # relative symlinks, like the busybox image
	done
	printf 'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n' >"$r/etc/passwd"
	printf 'root:x:0:\napp:x:1000:\n' >"$r/etc/group"
	printf 'hello\n' >"$r/etc/motd" # changed-byte flips one byte of this
	local c=$r/usr/share/cocoon

	# hardlink pair inside one layer (tar entry "hard-b link to bin/hard-a")
	printf '#!/bin/sh\necho hard\n' >"$r/bin/hard-a"
	chmod 0755 "$r/bin/hard-a"
	ln "$r/bin/hard-a" "$r/bin/hard-b"
	# user.* xattr (PAX record SCHILY.xattr.user.cocoon)
	printf 'has an xattr\n' >"$c/xattr.txt"
	setfattr -n user.cocoon -v fixture "$c/xattr.txt"
	# setuid file and setgid directory
	printf '#!/bin/sh\nid\n' >"$r/bin/suid-tool"
	chmod 4755 "$r/bin/suid-tool"
	mkdir "$r/srv/shared"
	chown 0:1000 "$r/srv/shared"
	chmod 2775 "$r/srv/shared"
	# FIFO and a character device like /dev/null
	mkfifo -m 0644 "$r/srv/fifo"
	mknod -m 0666 "$r/dev/testnull" c 1 3
	# owned by the app user
	printf 'mine\n' >"$r/home/app/owned.txt"
	chown -R 1000:1000 "$r/home/app"
	# path longer than 100 (and 255) characters
	mkdir -p "$r/$LONG_DIR"
	printf 'long\n' >"$r/$LONG_DIR/$LONG_FILE"
	# symlinks: relative, absolute, dangling
	ln -s ../../../etc/motd "$c/rel-link"
	ln -s /etc/motd "$c/abs-link"
	ln -s /nonexistent/target "$c/dangling-link"
	: >"$c/empty"
	# 3 MiB of deterministic pseudo-random bytes: AES-256-CTR of zeros under
	# a fixed key, so it does not compress and is the same on every machine.
	head -c 3M /dev/zero | openssl enc -aes-256-ctr -nosalt \
		-K "$(rep 0 64)" -iv "$(rep 0 32)" >"$c/random-3m.bin"

	# Things layer 2 changes.
	printf 'delete me\n' >"$r/etc/delete-me"
	mkdir -p "$c/gone-dir/sub"
	printf 'x\n' >"$c/gone-dir/a"
	printf 'y\n' >"$c/gone-dir/sub/b"
	mkdir -p "$c/emptied/sub"
	printf '1\n' >"$c/emptied/one"
	printf '2\n' >"$c/emptied/two"
	printf '3\n' >"$c/emptied/sub/three"
	printf 'version 1\n' >"$c/modified.txt"
	printf 'link target\n' >"$c/link-target.txt"
	printf '#!/bin/sh\necho chmod\n' >"$c/chmod-me.sh"
	chmod 0644 "$c/chmod-me.sh"
	# Things layer 3 (GNU tar) changes.
	mkdir -p "$r/srv/opaque/sub"
	printf 'old\n' >"$r/srv/opaque/old1"
	printf 'old\n' >"$r/srv/opaque/sub/old2"

	clamp_mtimes "$r" "$T_L1"
	# An old fixed mtime (after the clamp, which only lowers newer times).
	printf 'fixed\n' >"$r/etc/fixed-mtime"
	touch -d '2001-02-03 00:00:00 UTC' "$r/etc/fixed-mtime"
	touch -d "@$T_L1" "$r/etc"
}

# Layer 2: the changes umoci's diff (repack) has to express.
busybox_layer2() { # ROOTFS
	local r=$1 c=$1/usr/share/cocoon
	rm "$r/etc/delete-me"                  # file whiteout
	rm -r "$c/gone-dir"                    # directory whiteout
	rm -rf "${c:?}/emptied/"*              # "opaque" dir: umoci writes one whiteout per child
	printf 'new\n' >"$c/emptied/new"
	printf 'version 2, longer\n' >"$c/modified.txt" # content change
	ln "$c/link-target.txt" "$c/link-in-l2"  # hardlink to a layer-1 file
	chmod 0755 "$c/chmod-me.sh"            # mode-only change
	clamp_mtimes "$r" "$T_L2"
}

# Layer 3, written by GNU tar (gnu format) and added verbatim with
# `umoci raw add-layer`, for what umoci's own diff never produces:
#  - a real opaque whiteout (.wh..wh..opq) for /srv/opaque
#  - a hardlink entry whose target (bin/hard-a) exists only in layer 1
#  - a ././@LongLink long name
#  - "./"-prefixed names and entries whose parents are only in lower layers
busybox_layer3() { # STAGING_DIR LAYER_TAR
	local s=$1 out=$2
	mkdir -p "$s/bin" "$s/srv/opaque" "$s/usr/share/cocoon/gnu-long"
	printf '#!/bin/sh\necho hard\n' >"$s/bin/hard-a"
	chmod 0755 "$s/bin/hard-a"
	ln "$s/bin/hard-a" "$s/bin/hard-c"
	: >"$s/srv/opaque/.wh..wh..opq"
	printf 'fresh\n' >"$s/srv/opaque/fresh.txt"
	printf 'gnu long name\n' >"$s/usr/share/cocoon/gnu-long/$GNU_LONG_FILE"
	chmod 0755 "$s/srv/opaque" "$s/usr/share/cocoon/gnu-long"
	(
		cd "$s"
		tar --format=gnu --numeric-owner --owner=0 --group=0 --mtime="@$T_L3" \
			--no-recursion -cf "$out" \
			./bin/hard-a ./bin/hard-c \
			./srv/opaque/ ./srv/opaque/.wh..wh..opq ./srv/opaque/fresh.txt \
			./usr/share/cocoon/gnu-long/ "./usr/share/cocoon/gnu-long/$GNU_LONG_FILE"
	)
	# GNU tar stored hard-a as the file and hard-c as a link to it; drop the
	# file so hard-c links across layers to layer 1's /bin/hard-a.
	tar --delete -f "$out" ./bin/hard-a
}

repack() { # IMAGE:TAG BUNDLE TIME WHAT
	umoci repack --image "$1" --history.created "$(iso "$3")" \
		--history.created_by "cocoon fixtures: $4" "$2" >&2
}

build_busybox() { # WORK OUT
	local w=$1 out=$2 img=$2/busybox b
	b=$w/bb-bundle

	stage "busybox: layer 1 (rootfs + edge cases)"
	umoci init --layout "$img"
	umoci new --image "$img:latest"
	umoci unpack --image "$img:latest" "$b" >&2
	busybox_layer1 "$b/rootfs"
	repack "$img:latest" "$b" "$T_L1" "busybox rootfs and edge cases"
	rm -rf "$b"

	stage "busybox: layer 2 (whiteouts, modifications, hardlink to layer 1)"
	umoci unpack --image "$img:latest" "$b" >&2
	busybox_layer2 "$b/rootfs"
	repack "$img:latest" "$b" "$T_L2" "deletions, opaque-by-whiteouts, modifications"
	rm -rf "$b"

	stage "busybox: layer 3 (GNU tar: opaque marker, cross-layer hardlink)"
	busybox_layer3 "$w/l3-staging" "$w/layer3.tar"
	umoci raw add-layer --image "$img:latest" --history.created "$(iso "$T_L3")" \
		--history.created_by "cocoon fixtures: GNU tar layer" "$w/layer3.tar" >&2
	rm -rf "$w/l3-staging" "$w/layer3.tar"

	stage "busybox: config"
	umoci config --image "$img:latest" "${BUSYBOX_CONFIG[@]}" \
		--created "$(iso "$T_L1")" --author "cocoon fixtures" --no-history

	stage "busybox: relayered (same tree, one layer)"
	umoci unpack --image "$img:latest" "$w/bb-latest" >&2
	umoci new --image "$img:relayered"
	umoci unpack --image "$img:relayered" "$b" >&2
	# cp -a keeps modes, owners, times, hardlinks, xattrs, devices, FIFOs.
	cp -a "$w/bb-latest/rootfs/." "$b/rootfs/"
	repack "$img:relayered" "$b" "$T_L1" "the flattened latest tree as one layer"
	umoci config --image "$img:relayered" "${BUSYBOX_CONFIG[@]}" \
		--created "$(iso "$T_L1")" --author "cocoon fixtures" --no-history
	rm -rf "$b" "$w/bb-latest"
	assert_same_tree "$img" latest relayered "$w"

	stage "busybox: changed-byte, changed-entrypoint, changed-env"
	umoci unpack --image "$img:latest" "$b" >&2
	printf 'hellp\n' >"$b/rootfs/etc/motd"   # same size, same mtime, one byte
	touch -d "@$T_L1" "$b/rootfs/etc/motd"
	repack "$img:changed-byte" "$b" "$T_L4" "one byte of /etc/motd"
	rm -rf "$b"
	umoci config --image "$img:latest" --tag changed-entrypoint --no-history \
		--config.entrypoint /bin/ash --config.entrypoint -c
	umoci config --image "$img:latest" --tag changed-env --no-history \
		--config.env FOO=baz

	stage "busybox: umoci-insert (umoci insert --opaque; truncated tar)"
	mkdir -p "$w/insert-src"
	printf 'inserted\n' >"$w/insert-src/inserted.txt"
	touch -d "@$T_L4" "$w/insert-src/inserted.txt" "$w/insert-src"
	umoci insert --image "$img:latest" --tag umoci-insert --opaque \
		--history.created "$(iso "$T_L4")" "$w/insert-src" /srv/opaque >&2
	rm -rf "$w/insert-src"

	umoci gc --layout "$img"
	verify_busybox "$img"
}

# Check that the edge cases really are in the layer tars, as entries.
verify_busybox() { # LAYOUT
	local img=$1 l1 l2 l3 l4 layers
	stage "busybox: verify layer contents"
	# (mapfile, not `| head`: an early-closed pipe would break the producer)
	mapfile -t layers < <(oci_layer_blobs "$img" latest)
	((${#layers[@]} == 3)) || die "latest should have 3 layers"
	l1=${layers[0]} l2=${layers[1]} l3=${layers[2]}
	expect_listing "$l1" '^h.* bin/hard-b link to bin/hard-a$' "in-layer hardlink"
	expect_bytes "$l1" 'SCHILY.xattr.user.cocoon=fixture' "xattr PAX record"
	expect_listing "$l1" '^-rwsr-xr-x .* bin/suid-tool$' "setuid file"
	expect_listing "$l1" '^drwxrwsr-x +0/1000 .* srv/shared/$' "setgid dir"
	expect_listing "$l1" '^p.* srv/fifo$' "FIFO"
	expect_listing "$l1" '^c.* 1,3 .* dev/testnull$' "char device"
	expect_listing "$l1" '^-.* 1000/1000 .* home/app/owned.txt$' "1000:1000 file"
	expect_listing "$l1" "$LONG_FILE\$" "long path"
	expect_bytes "$l1" "path=$LONG_DIR/$LONG_FILE" "PAX path record"
	expect_listing "$l1" '^-.* 2001-02-03 .* etc/fixed-mtime$' "fixed mtime"
	expect_listing "$l1" 'rel-link -> \.\./\.\./\.\./etc/motd$' "relative symlink"
	expect_listing "$l1" 'abs-link -> /etc/motd$' "absolute symlink"
	expect_listing "$l1" '^drwxrwxrwt .* tmp/$' "sticky /tmp"
	expect_listing "$l1" '^-.* 3145728 .*/random-3m\.bin$' "3 MiB file"
	expect_listing "$l2" ' etc/\.wh\.delete-me$' "file whiteout"
	expect_listing "$l2" ' usr/share/cocoon/\.wh\.gone-dir$' "directory whiteout"
	expect_listing "$l2" ' usr/share/cocoon/emptied/\.wh\.one$' "per-file whiteout"
	expect_listing "$l2" ' usr/share/cocoon/emptied/new$' "file in emptied dir"
	# umoci re-emits the layer-1 file too; which name is the "file" and which
	# the "link" depends on its walk order (here: link-in-l2 is the file).
	expect_listing "$l2" '^h.* usr/share/cocoon/(link-target.txt link to usr/share/cocoon/link-in-l2|link-in-l2 link to usr/share/cocoon/link-target.txt)$' "re-emitted hardlink"
	expect_listing "$l2" '^-rwxr-xr-x .* usr/share/cocoon/chmod-me.sh$' "chmod"
	expect_listing "$l3" ' \./srv/opaque/\.wh\.\.wh\.\.opq$' "opaque whiteout"
	expect_listing "$l3" '^h.* \./bin/hard-c link to \./bin/hard-a$' "cross-layer hardlink"
	if blob_cat "$l3" | tar -tf - | grep -x './bin/hard-a' >/dev/null; then
		die "layer 3 must not contain bin/hard-a itself"
	fi
	expect_bytes "$l3" '././@LongLink' "GNU long name"
	mapfile -t layers < <(oci_layer_blobs "$img" umoci-insert)
	l4=${layers[-1]}
	expect_listing "$l4" 'srv/opaque/\.wh\.\.wh\.\.opq$' "umoci insert opaque whiteout"
}

# skopeo re-encodings of busybox:latest.
build_busybox_copies() { # WORK OUT
	local w=$1 out=$2 src="oci:$2/busybox:latest" t
	stage "busybox-zstd (skopeo, zstd layers)"
	skopeo_copy --dest-compress-format zstd "$src" "oci:$out/busybox-zstd:latest"

	stage "busybox-plain (skopeo, uncompressed layers)"
	# skopeo 1.9 ignores --dest-decompress for the oci: transport, so
	# decompress into dir: first and then copy that into an OCI layout
	# without recompressing.
	skopeo_copy --dest-decompress "$src" "dir:$w/plain"
	skopeo_copy --dest-oci-accept-uncompressed-layers "dir:$w/plain" "oci:$out/busybox-plain:latest"
	rm -rf "$w/plain"

	stage "busybox.tar (skopeo, docker-archive)"
	skopeo_copy "$src" "docker-archive:$out/busybox.tar:busybox:latest"

	for t in $(oci_layer_types "$out/busybox-zstd" latest); do
		[[ $t == application/vnd.oci.image.layer.v1.tar+zstd ]] || die "busybox-zstd has a $t layer"
	done
	for t in $(oci_layer_types "$out/busybox-plain" latest); do
		[[ $t == application/vnd.oci.image.layer.v1.tar ]] || die "busybox-plain has a $t layer"
	done
	# Same uncompressed layers as busybox:latest: each blob decompresses to
	# the diff_id in the (shared) config.  umoci 0.4.7 cannot unpack zstd,
	# so this is how busybox-zstd is checked.
	local lay blob diff_ids i
	mapfile -t diff_ids < <(skopeo inspect --config "$src" |
		python3 -c 'import json,sys; print("\n".join(json.load(sys.stdin)["rootfs"]["diff_ids"]))')
	for lay in busybox-zstd busybox-plain; do
		i=0
		while read -r blob; do
			[[ sha256:$(blob_cat "$blob" | sha256sum | cut -c1-64) == "${diff_ids[i]}" ]] ||
				die "$lay layer $i does not decompress to diff_id ${diff_ids[i]}"
			i=$((i + 1))
		done < <(oci_layer_blobs "$out/$lay" latest)
		((i == ${#diff_ids[@]})) || die "$lay has $i layers, latest ${#diff_ids[@]}"
	done
}

# ----------------------------------------------------------------- debian --

# debootstrap'd bookworm as the shared base layer (tag "base").
debian_base() { # WORK LAYOUT
	local w=$1 img=$2 b=$1/deb-bundle r
	umoci init --layout "$img"
	umoci new --image "$img:base"
	umoci unpack --image "$img:base" "$b" >&2
	r=$b/rootfs
	debootstrap --variant=minbase "$DEBIAN_SUITE" "$r" "$DEBIAN_MIRROR" >"$w/debootstrap.log" 2>&1 || {
		tail -n 30 "$w/debootstrap.log" >&2
		die "debootstrap failed (log above)"
	}
	# Apt in the images talks to deb.debian.org only.
	cat >"$r/etc/apt/sources.list" <<-EOF
		deb $DEBIAN_MIRROR $DEBIAN_SUITE main
		deb $DEBIAN_MIRROR $DEBIAN_SUITE-updates main
		deb ${DEBIAN_MIRROR}-security $DEBIAN_SUITE-security main
	EOF
	# apt settings like the official debian image's docker-* snippets: no
	# translations, compressed lists.  Without them the package layers carry
	# ~165 MB of lists and caches.  pkgcache.bin is kept so the cleanup layer
	# has a big file to white out; the duplicate srcpkgcache.bin is not.
	cat >"$r/etc/apt/apt.conf.d/90cocoon-fixtures" <<-'EOF'
		Acquire::Languages "none";
		Acquire::GzipIndexes "true";
		Acquire::CompressionTypes::Order:: "gz";
		Dir::Cache::srcpkgcache "";
	EOF
	# Like the official image: no downloaded packages or lists, an empty
	# /dev (the runtime provides it), nothing from the build host.
	rm -rf "$r"/var/cache/apt/archives/*.deb "$r"/var/cache/apt/*.bin \
		"$r"/var/lib/apt/lists/* "$r"/var/log/bootstrap.log "${r:?}"/dev/*
	mkdir -p "$r/var/lib/apt/lists/partial"
	: >"$r/etc/resolv.conf"
	echo localhost >"$r/etc/hostname"
	clamp_mtimes "$r" "$T_DEB_BASE"
	repack "$img:base" "$b" "$T_DEB_BASE" "debootstrap --variant=minbase $DEBIAN_SUITE"
	umoci config --image "$img:base" --config.cmd bash \
		--config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
		--created "$(iso "$T_DEB_BASE")" --no-history
	rm -rf "$b"
}

# One application tag: base + a package layer + a cleanup layer.
debian_app() { # WORK LAYOUT TAG "PACKAGES" "SMOKE_CMD" EXTRA_FN CONFIG_ARGS...
	local w=$1 img=$2 tag=$3 pkgs=$4 smoke=$5 extra=$6 b=$1/deb-bundle
	shift 6
	umoci unpack --image "$img:base" "$b" >&2
	# Keep maintainer scripts from starting services in the chroot.
	printf '#!/bin/sh\nexit 101\n' >"$b/rootfs/usr/sbin/policy-rc.d"
	chmod 0755 "$b/rootfs/usr/sbin/policy-rc.d"
	# shellcheck disable=SC2086 # $pkgs is a word list
	# The smoke command checks that what was installed runs at all.
	chroot_run "$b/rootfs" sh -ec "apt-get update -qq
		apt-get install -y -qq --no-install-recommends $pkgs
		$smoke" \
		>"$w/apt-$tag.log" 2>&1 || {
		tail -n 30 "$w/apt-$tag.log" >&2
		die "apt-get install $pkgs failed (log above)"
	}
	printf 'fixtures:          %s: %s\n' "$smoke" "$(tail -n1 "$w/apt-$tag.log")" >&2
	# The downloaded .debs never belong in a layer; the lists and pkgcache
	# stay so that the cleanup layer has something to white out.
	rm -rf "$b/rootfs/usr/sbin/policy-rc.d" "$b"/rootfs/var/cache/apt/archives/*.deb
	[[ -z $extra ]] || "$extra" "$b/rootfs"
	clamp_mtimes "$b/rootfs" "$T_DEB_APP"
	repack "$img:$tag" "$b" "$T_DEB_APP" "apt-get install --no-install-recommends $pkgs"
	rm -rf "$b"

	umoci unpack --image "$img:$tag" "$b" >&2
	rm -rf "$b"/rootfs/usr/share/doc/* "$b"/rootfs/usr/share/man/* \
		"$b"/rootfs/var/lib/apt/lists/* "$b"/rootfs/var/cache/apt/*.bin
	clamp_mtimes "$b/rootfs" "$T_DEB_CLEAN"
	repack "$img:$tag" "$b" "$T_DEB_CLEAN" "rm docs, man pages, apt lists and caches"
	rm -rf "$b"
	umoci config --image "$img:$tag" "$@" \
		--config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
		--created "$(iso "$T_DEB_CLEAN")" --no-history
}

# nginx logs to the container's stdout/stderr, like the official image.
nginx_logs_to_stdio() { # ROOTFS
	ln -sf /dev/stdout "$1/var/log/nginx/access.log"
	ln -sf /dev/stderr "$1/var/log/nginx/error.log"
}

build_debian() { # WORK OUT
	local w=$1 out=$2 img=$2/debian
	export SOURCE_DATE_EPOCH=$T_DEB_BASE
	stage "debian: debootstrap --variant=minbase $DEBIAN_SUITE (base layer)"
	debian_base "$w" "$img"

	stage "debian:nginx (nginx-light + cleanup layer)"
	debian_app "$w" "$img" nginx nginx-light "nginx -v" nginx_logs_to_stdio \
		--config.cmd nginx --config.cmd -g --config.cmd 'daemon off;' \
		--config.exposedports 80/tcp

	stage "debian:redis (redis-server + cleanup layer)"
	debian_app "$w" "$img" redis redis-server "redis-server --version" "" \
		--config.cmd redis-server --config.cmd --protected-mode --config.cmd no \
		--config.exposedports 6379/tcp

	stage "debian:python (python3 + cleanup layer)"
	debian_app "$w" "$img" python python3 "python3 -c 'import sys; print(sys.version)'" "" \
		--config.cmd python3

	umoci gc --layout "$img"
	verify_debian "$img"

	stage "debian-nginx.tar (skopeo, docker-archive)"
	skopeo_copy "oci:$out/debian:nginx" "docker-archive:$out/debian-nginx.tar:debian:nginx"
}

# The three apps must share the base layer blob, and each cleanup layer
# must delete things (whiteouts).
verify_debian() { # LAYOUT
	local img=$1 t base layers
	stage "debian: verify layers"
	base=$(oci_layer_blobs "$img" base)
	for t in nginx redis python; do
		mapfile -t layers < <(oci_layer_blobs "$img" "$t")
		((${#layers[@]} == 3)) || die "debian:$t should have 3 layers"
		[[ ${layers[0]} == "$base" ]] || die "debian:$t does not share the base layer"
		expect_listing "${layers[2]}" ' usr/share/doc/\.wh\.' "debian:$t cleanup whiteouts"
		expect_listing "${layers[2]}" ' var/lib/apt/lists/\.wh\.' "debian:$t apt list whiteouts"
	done
	mapfile -t layers < <(oci_layer_blobs "$img" nginx)
	expect_listing "${layers[1]}" ' var/log/nginx/access\.log -> /dev/stdout$' "nginx access.log -> /dev/stdout"
}

# ------------------------------------------------------------ MANIFEST.txt --

write_manifest_txt() { # OUT
	stage "MANIFEST.txt"
	python3 - "$1" >"$1/MANIFEST.txt" <<-'PY'
		import hashlib, json, os, subprocess, sys, tarfile
		out = sys.argv[1]
		print("# image\tmanifest digest\tconfig digest\tlayer media types (base first)")
		for lay in sorted(os.listdir(out)):
		    p = os.path.join(out, lay)
		    if os.path.isdir(p) and os.path.exists(os.path.join(p, "index.json")):
		        idx = json.load(open(os.path.join(p, "index.json")))
		        for d in sorted(idx["manifests"], key=lambda d: d["annotations"]["org.opencontainers.image.ref.name"]):
		            tag = d["annotations"]["org.opencontainers.image.ref.name"]
		            m = json.load(open(os.path.join(p, "blobs/sha256", d["digest"].split(":")[1])))
		            types = ",".join(l["mediaType"] for l in m["layers"])
		            print(f"{lay}:{tag}\t{d['digest']}\t{m['config']['digest']}\t{types}")
		    elif lay.endswith(".tar"):
		        # docker-archive: the digest is that of the manifest skopeo
		        # synthesizes for it (what `skopeo inspect` reports); that
		        # manifest always says tar.gzip, so the layer formats listed
		        # are the real ones, read from the archive.
		        raw = subprocess.run(["skopeo", "inspect", "--raw", f"docker-archive:{p}"],
		                             check=True, capture_output=True).stdout
		        with tarfile.open(p) as t:
		            mj = json.load(t.extractfile("manifest.json"))[0]
		            def kind(name):
		                magic = t.extractfile(t.getmember(name)).read(4)
		                return {b"\x1f\x8b": "tar+gzip", b"\x28\xb5": "tar+zstd"}.get(magic[:2], "tar")
		            types = ",".join("docker-archive " + kind(l) for l in mj["Layers"])
		        print(f"{lay}\tsha256:{hashlib.sha256(raw).hexdigest()}\tsha256:{mj['Config'].split('.')[0]}\t{types}")
	PY
}

# ------------------------------------------------------------------- main --

build_all() { # TMP: everything into TMP/out
	mkdir -p "$1/work"
	build_busybox "$1/work" "$1/out"
	build_busybox_copies "$1/work" "$1/out"
	build_debian "$1/work" "$1/out"
	write_manifest_txt "$1/out"
}

main() {
	trap 'on_error $? $LINENO "$BASH_COMMAND"' ERR
	cached_build "${1:-$REPO/target/fixtures}" build_all
}

# Sourcing the file (for debugging single functions) does not run it.
if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
	main "$@"
fi
