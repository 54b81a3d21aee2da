#!/bin/sh
# Install davsync as a service on a Raspberry Pi (Raspberry Pi OS / Debian). Run from a clone:
#   sudo sh deploy/install-pi.sh /srv/davsync/share
set -eu
SHARE="${1:-/srv/davsync/share}"
HERE="$(cd "$(dirname "$0")/.." && pwd)"

apt-get install -y python3-venv >/dev/null
id davsync >/dev/null 2>&1 || useradd --system --home /var/lib/davsync --shell /usr/sbin/nologin davsync
install -d -o davsync -g davsync -m 0700 /var/lib/davsync
install -d -o davsync -g davsync -m 0755 "$SHARE"
install -d -m 0755 /etc/davsync /opt/davsync
python3 -m venv /opt/davsync/venv
/opt/davsync/venv/bin/pip install -q "$HERE"
[ -f /etc/davsync/davsync.toml ] || sed "s#/srv/davsync/share#$SHARE#" "$HERE/deploy/davsync.toml" > /etc/davsync/davsync.toml
sed "s#ReadWritePaths=/srv/davsync/share#ReadWritePaths=$SHARE#" "$HERE/deploy/davsync.service" > /etc/systemd/system/davsync.service
if [ ! -s /etc/davsync/users.json ]; then
    echo "Create the first user (the password is asked twice, hidden):"
    printf "User name: "; read -r NAME
    /opt/davsync/venv/bin/davsync user add "$NAME" --users /etc/davsync/users.json
fi
chown davsync:davsync /etc/davsync/users.json
chmod 0600 /etc/davsync/users.json
systemctl daemon-reload
systemctl enable --now davsync
echo "davsync is running. See the URLs with: journalctl -u davsync -n 30"
