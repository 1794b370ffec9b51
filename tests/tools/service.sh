#!/bin/sh
# `cmake --install` lays out the service for the prefix given at install time
# (/usr and /usr/local, each under DESTDIR): binary, a hardened vendor unit
# whose paths are that prefix's and that `systemd-analyze verify` accepts as
# installed, default config (0600) in that prefix's sysconfdir that the agent
# accepts; a reinstall keeps an edited config and never writes /etc/systemd.
#   service.sh BUILD_DIR WORK_DIR
set -eu
build=$1
work=$2
rm -rf "$work"
mkdir -p "$work"
fail() { echo "$*"; exit 1; }

for prefix in /usr /usr/local; do
	root=$work/root$(echo "$prefix" | tr / _)
	case $prefix in
	/usr) etc=/etc/keytrail ;; # GNUInstallDirs: sysconfdir of /usr is /etc
	*) etc=$prefix/etc/keytrail ;;
	esac
	bin=$prefix/sbin/keytrail
	unit=$root$prefix/lib/systemd/system/keytrail.service
	config=$root$etc/keytrail.yaml
	DESTDIR="$root" cmake --install "$build" --prefix "$prefix" >/dev/null

	[ -x "$root$bin" ] || fail "$prefix: no installed binary at $bin"
	[ -f "$unit" ] || fail "$prefix: no unit at $unit"
	[ "$(stat -c %a "$config")" = 600 ] || fail "$prefix: config mode $(stat -c %a "$config"), want 600"
	# Nothing outside the prefix but the sysconfdir it maps to.
	extra=$(cd "$root" && find . -mindepth 1 -maxdepth 1 ! -name usr ! -name etc)
	[ -z "$extra" ] || fail "$prefix: installed outside the prefix: $extra"
	[ ! -e "$root/etc/systemd" ] || fail "$prefix: wrote into /etc/systemd"
	[ "$prefix" = /usr ] || [ ! -e "$root/etc" ] || fail "$prefix: wrote into /etc"

	# The default config is valid as shipped.
	"$root$bin" check -c "$config" | head -n 1 | grep -q ': ok' || { "$root$bin" check -c "$config"; exit 1; }

	# The unit names this prefix's binary and config, and fails (not skips)
	# without BTF.
	grep -qx "ExecStartPre=+$bin check" "$unit" || fail "$prefix: ExecStartPre is $(grep ^ExecStartPre= "$unit")"
	grep -qx "ExecStart=$bin run --config $etc/keytrail.yaml" "$unit" ||
		fail "$prefix: ExecStart is $(grep ^ExecStart= "$unit")"
	grep -qx 'AssertPathExists=/sys/kernel/btf/vmlinux' "$unit" || fail "$prefix: no BTF assertion"
	! grep -q '^Condition' "$unit" || fail "$prefix: a Condition skips the unit silently"
	grep -q '^ProtectSystem=strict' "$unit"
	grep -q '^CapabilityBoundingSet=CAP_BPF' "$unit"

	# systemd's own checks on the unit as installed (its commands must exist
	# under the root): a copy of the install tree, plus the host's targets and
	# slices the unit orders itself against, and /bin/kill for ExecReload.
	vroot=$work/verify$(echo "$prefix" | tr / _)
	cp -a "$root" "$vroot"
	mkdir -p "$vroot/lib/systemd/system" "$vroot/bin"
	cp -L /lib/systemd/system/*.target /lib/systemd/system/*.slice "$vroot/lib/systemd/system/"
	cp -L /bin/kill "$vroot/bin/kill"
	systemd-analyze verify --root="$vroot" keytrail.service
	systemd-analyze security --offline=yes --root="$vroot" keytrail.service | tail -n 1

	# A reinstall replaces the vendor unit, keeps an edited config (the
	# default goes beside it) and leaves the admin's drop-ins alone.
	echo "# edited" >>"$config"
	mkdir -p "$root/etc/systemd/system/keytrail.service.d"
	printf '[Service]\nEnvironment=EDITED=1\n' >"$root/etc/systemd/system/keytrail.service.d/local.conf"
	echo "# stale" >>"$unit"
	DESTDIR="$root" cmake --install "$build" --prefix "$prefix" >/dev/null
	grep -q '^# edited' "$config" || fail "$prefix: reinstall overwrote the config"
	[ -f "$root$etc/keytrail.yaml.default" ] || fail "$prefix: no keytrail.yaml.default beside the edited config"
	! grep -q '^# stale' "$unit" || fail "$prefix: reinstall kept a stale unit"
	grep -q EDITED "$root/etc/systemd/system/keytrail.service.d/local.conf" || fail "$prefix: drop-in changed"
	echo "service layout ok for --prefix $prefix"
done
