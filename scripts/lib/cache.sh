# Shared by scripts/fixtures.sh and scripts/models.sh (sourced, not run):
# one log line per stage, and a cache of build results in $CACHE/<recipe key>
# that several runs can share (a lock), that never holds a half-built result
# (built in a temp dir, renamed when complete), and that keeps only the
# current recipe's result.
#
# The sourcing script sets NAME (log prefix) and CACHE, and defines
# recipe_key (prints the key) and ensure_tools (installs what building needs).

T0=$EPOCHREALTIME
STAGE="start"

elapsed() { # seconds since start, one decimal
	local now=$EPOCHREALTIME
	awk -v a="$T0" -v b="$now" 'BEGIN { printf "%6.1f", b - a }'
}

stage() { # one line per stage on stderr; remembered for the error trap
	STAGE=$*
	printf '%s: [%ss] %s\n' "$NAME" "$(elapsed)" "$STAGE" >&2
}

die() {
	printf '%s: error in stage "%s": %s\n' "$NAME" "$STAGE" "$*" >&2
	exit 1
}

on_error() { # EXIT_STATUS LINE COMMAND, from an ERR trap
	printf '%s: FAILED in stage "%s" (line %s, exit %s): %s\n' \
		"$NAME" "$STAGE" "$2" "$1" "$3" >&2
}

link_outlink() { # TARGET OUTLINK: points OUTLINK at TARGET, atomically
	local target=$1 link=$2
	mkdir -p "$(dirname "$link")"
	if [[ -e $link && ! -L $link ]]; then
		die "$link exists and is not a symlink; move it away"
	fi
	ln -sfn "$target" "$link.tmp.$$"
	mv -Tf "$link.tmp.$$" "$link"
}

# Remove every other recipe dir (and temp dirs of killed runs).  Runs under
# the lock, so no build of ours is in progress.
prune_cache() { # KEY
	local d
	for d in "$CACHE"/* "$CACHE"/.tmp-*; do
		[[ -e $d && $(basename "$d") != "$1" ]] || continue
		stage "pruning old $NAME dir $d"
		rm -rf --one-file-system "$d"
	done
}

# cached_build OUTLINK BUILD_FN: unless the current recipe's result is
# cached, runs `BUILD_FN TMP` (which fills TMP/out) under the cache lock;
# then points OUTLINK at the result and prints the result's path.
cached_build() {
	local outlink=$1 build=$2 key final tmp total
	key=$(recipe_key)
	final=$CACHE/$key
	mkdir -p "$CACHE"
	exec 9>"$CACHE/.lock"
	if ! flock -n 9; then
		stage "waiting for another $NAME run to finish"
		flock 9
	fi

	if [[ -f $final/.complete ]]; then
		stage "$NAME $key are cached: $final"
	else
		stage "building $NAME $key into $final"
		[[ ! -e $final ]] || rm -rf --one-file-system "$final" # incomplete: never ours
		ensure_tools
		tmp=$CACHE/.tmp-$key-$$
		rm -rf "$tmp"
		mkdir -p "$tmp/out"
		# shellcheck disable=SC2064 # expand $tmp now
		trap "rm -rf --one-file-system '$tmp'" EXIT
		"$build" "$tmp"
		date -u +%Y-%m-%dT%H:%M:%SZ >"$tmp/out/.complete"
		mv -T "$tmp/out" "$final"
		rm -rf --one-file-system "$tmp"
		trap - EXIT
	fi
	prune_cache "$key"
	link_outlink "$final" "$outlink"
	total=$(elapsed)
	stage "done: $outlink -> $final (total ${total// /}s)"
	printf '%s\n' "$final"
}
