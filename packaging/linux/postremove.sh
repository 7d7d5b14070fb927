#!/bin/sh
# The package manager removes the files it installed; this removes what running the app as
# root may have added inside its own folder (nothing, normally), so that /opt/postroom goes.
# User data (databases, settings, the keyring) lives in the users' homes and is kept.
set -e
case "$1" in
remove | purge | 0) rm -rf /opt/postroom ;;
esac
exit 0
