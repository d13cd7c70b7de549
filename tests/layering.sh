#!/bin/bash
# layering.sh SOURCE_DIR — no #include runs back up the layers of the area
# libraries (meson.build): each src/<area> may include only its own headers,
# those of the areas it links (src/<area>/meson.build) and the public
# include/edgemesh/. Prints each upward include; exit 1 if there is one.
set -u
cd "${1:-.}/src" || exit 1
declare -A below=(
	[util]=''
	[registry]='util'
	[sources]='registry util'
	[dns]='registry util'
	[lb]='registry util'
	[nf]='util'
	[proxy]='lb registry util'
	[udp]='lb registry util'
	[daemon]='sources dns nf proxy udp lb registry util'
)
bad=0
for dir in */; do
	area=${dir%/}
	[ -n "${below[$area]+set}" ] || { echo "src/$area: an area layering.sh does not know"; bad=1; continue; }
	allowed=" $area ${below[$area]} edgemesh "
	while IFS=: read -r file line inc; do
		to=${inc#*\"}; to=${to%%/*}
		[[ $allowed == *" $to "* ]] && continue
		echo "src/$file:$line: $area includes $to (${inc#*#include })"
		bad=1
	done < <(grep -nE '^[[:space:]]*#[[:space:]]*include[[:space:]]+"[a-z_]+/' "$area"/*.[ch] 2>/dev/null)
done
[ $bad = 0 ] && echo "no upward include in src/"
exit $bad
