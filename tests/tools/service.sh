#!/bin/sh
# `cmake --install` lays out the service: binary, hardened systemd unit that
# systemd-analyze accepts, default config (0600) that the agent accepts, and
# an edited config is kept on reinstall.
#   service.sh BUILD_DIR WORK_DIR
set -eu
build=$1
root=$2/root
rm -rf "$root"
DESTDIR="$root" cmake --install "$build" >/dev/null

bin=$(find "$root" -path '*/sbin/keytrail' -type f)
unit="$root/etc/systemd/system/keytrail.service"
config="$root/etc/keytrail/keytrail.yaml"
[ -x "$bin" ] || { echo "no installed binary"; exit 1; }
[ -f "$unit" ] || { echo "no unit at $unit"; exit 1; }
[ "$(stat -c %a "$config")" = 600 ] || { echo "config mode $(stat -c %a "$config"), want 600"; exit 1; }

# The default config is valid as shipped.
"$bin" check -c "$config" | head -n 1 | grep -q ': ok' || { "$bin" check -c "$config"; exit 1; }

# The unit, pointed at the installed binary, passes systemd's own checks.
sed "s#ExecStartPre=+[^ ]*#ExecStartPre=+$bin#; s#ExecStart=[^ ]*#ExecStart=$bin#" "$unit" > "$2/keytrail.service"
systemd-analyze verify "$2/keytrail.service"
grep -q '^ProtectSystem=strict' "$unit"
grep -q '^CapabilityBoundingSet=CAP_BPF' "$unit"
systemd-analyze security --offline=yes "$2/keytrail.service" | tail -n 1

# Reinstalling keeps an edited config and puts the default beside it.
echo "# edited" >> "$config"
DESTDIR="$root" cmake --install "$build" >/dev/null
grep -q '^# edited' "$config" || { echo "reinstall overwrote the config"; exit 1; }
[ -f "$root/etc/keytrail/keytrail.yaml.default" ]
echo "service layout ok"
