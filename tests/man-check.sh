#!/bin/bash
# man-check.sh DAEMON MANPAGE — every flag of --help is documented in the
# man page, the page has the sections the issue asks for, and man(1)
# renders it without warnings.
set -u
daemon=$1 page=$2 fail=0
for flag in $("$daemon" --help | grep -o -- '--[a-z0-9-]*' | sort -u); do
	grep -q -- "\\\\-\\\\-${flag#--}\\|--${flag#--}" "$page" || { echo "not in the man page: $flag"; fail=1; }
done
for sec in OPTIONS SIGNALS FILES 'EXIT STATUS' STATUS METRICS; do
	grep -q "^\.SH $sec\$\|^\.SH \"$sec\"\$" "$page" || { echo "no section $sec"; fail=1; }
done
if command -v man >/dev/null; then
	warn=$(LC_ALL=C MANWIDTH=80 man --warnings -l "$page" 2>&1 >/dev/null)
	[ -z "$warn" ] || { echo "man warnings: $warn"; fail=1; }
fi
exit $fail
