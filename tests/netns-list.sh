#!/bin/bash
# netns-list.sh SOURCE_DIR NAME... — the netns suite of tests/meson.build
# (the NAMEs) holds exactly the scripts contrib/quickstart.sh's loop runs:
# netns-tests/*.sh but demo.sh and the benchmarks. Prints the difference.
set -u
src=$1; shift
want=$(for t in "$src"/netns-tests/*.sh; do
	case $t in */demo.sh|*bench*) continue ;; esac
	t=${t##*/}; echo "${t%.sh}"
done | sort)
have=$(printf '%s\n' "$@" | sort)
[ "$want" = "$have" ] && { echo "the netns suite holds all $# scripts"; exit 0; }
echo "netns-tests/ vs the netns suite (tests/meson.build netns_scripts):"
diff <(echo "$want") <(echo "$have")
exit 1
