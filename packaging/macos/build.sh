#!/usr/bin/env bash
# Build the macOS disk image: PyInstaller's Postroom.app, codesigned and notarized when the
# signing secrets are present, in a .dmg, then smoke-tested from the mounted image.
#
#   packaging/macos/build.sh [--out DIR]
#
# Needs Python 3.11+ as python3 and Xcode's command line tools (iconutil, codesign,
# hdiutil, notarytool). Signing, optional (all or none):
#   MACOS_CERTIFICATE           the Developer ID Application certificate, .p12 in base64
#   MACOS_CERTIFICATE_PASSWORD  its password
#   MACOS_SIGNING_IDENTITY      e.g. "Developer ID Application: Example (TEAMID)"
# Notarizing, optional, needs signing: APPLE_ID, APPLE_TEAM_ID, APPLE_APP_PASSWORD (an
# app-specific password). Produces DIR/postroom-VERSION-macos-ARCH.dmg.
# The release workflow (.github/workflows/release.yml) runs exactly this.
set -euo pipefail

cd "$(dirname "$0")/../.."
REPO=$PWD
OUT=dist
if [[ ${1:-} == --out ]]; then
    OUT=$2
fi
BUILD=$REPO/build
VENV=$BUILD/packaging-venv
DIST=$BUILD/pyinstaller/dist
APP=$DIST/Postroom.app
ENTITLEMENTS=$REPO/packaging/macos/entitlements.plist

step() { printf '==> %s\n' "$*"; }
fail() {
    printf 'packaging/macos/build.sh: %s\n' "$*" >&2
    exit 1
}

step "Build environment"
[[ -x $VENV/bin/python ]] || python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check '.[packaging]'

step "Icons"
rm -rf "$BUILD/icons"
QT_QPA_PLATFORM=offscreen "$VENV/bin/python" packaging/render_icons.py "$BUILD/icons"
ICONSET=$BUILD/icons/postroom.iconset
mkdir -p "$ICONSET"
for size in 16 32 128 256 512; do
    cp "$BUILD/icons/postroom-$size.png" "$ICONSET/icon_${size}x${size}.png"
    cp "$BUILD/icons/postroom-$((size * 2)).png" "$ICONSET/icon_${size}x${size}@2x.png"
done
iconutil -c icns -o "$BUILD/icons/postroom.icns" "$ICONSET"

step "PyInstaller"
POSTROOM_ICON_DIR=$BUILD/icons "$VENV/bin/pyinstaller" --noconfirm --clean --log-level WARN \
    --distpath "$DIST" --workpath "$BUILD/pyinstaller/work" packaging/pyinstaller/postroom.spec
VERSION=$("$APP/Contents/MacOS/postroom" --version | awk '{ print $NF }')
ARCH=$(uname -m)
mkdir -p "$OUT"
DMG=$OUT/postroom-$VERSION-macos-$ARCH.dmg

SIGNING=0
if [[ -n ${MACOS_CERTIFICATE:-} ]]; then
    SIGNING=1
    step "Codesigning Postroom.app"
    KEYCHAIN=$BUILD/signing.keychain-db
    KEYCHAIN_PASSWORD=$(uuidgen)
    security create-keychain -p "$KEYCHAIN_PASSWORD" "$KEYCHAIN"
    security set-keychain-settings -lut 3600 "$KEYCHAIN"
    security unlock-keychain -p "$KEYCHAIN_PASSWORD" "$KEYCHAIN"
    printf '%s' "$MACOS_CERTIFICATE" | base64 --decode >"$BUILD/certificate.p12"
    security import "$BUILD/certificate.p12" -k "$KEYCHAIN" -P "$MACOS_CERTIFICATE_PASSWORD" \
        -T /usr/bin/codesign
    rm -f "$BUILD/certificate.p12"
    security set-key-partition-list -S apple-tool:,apple: -s -k "$KEYCHAIN_PASSWORD" "$KEYCHAIN" >/dev/null
    security list-keychains -d user -s "$KEYCHAIN" $(security list-keychains -d user | tr -d '"')
    # Inside out: every library and executable, then the bundle, with the hardened runtime
    # that notarization requires.
    find "$APP/Contents" -type f \( -name '*.so' -o -name '*.dylib' -o -perm -u+x \) -print0 |
        xargs -0 codesign --force --timestamp --options runtime \
            --entitlements "$ENTITLEMENTS" --sign "$MACOS_SIGNING_IDENTITY"
    codesign --force --timestamp --options runtime --entitlements "$ENTITLEMENTS" \
        --sign "$MACOS_SIGNING_IDENTITY" "$APP"
    codesign --verify --deep --strict --verbose=2 "$APP"
fi

step "Disk image"
STAGE=$BUILD/dmg-stage
rm -rf "$STAGE" "$DMG"
mkdir -p "$STAGE"
cp -R "$APP" "$STAGE/"
ln -s /Applications "$STAGE/Applications"
hdiutil create -volname "Postroom $VERSION" -srcfolder "$STAGE" -ov -format UDZO "$DMG"
if ((SIGNING)); then
    codesign --force --timestamp --sign "$MACOS_SIGNING_IDENTITY" "$DMG"
    if [[ -n ${APPLE_ID:-} ]]; then
        step "Notarizing (notarytool)"
        xcrun notarytool submit "$DMG" --apple-id "$APPLE_ID" --team-id "$APPLE_TEAM_ID" \
            --password "$APPLE_APP_PASSWORD" --wait
        xcrun stapler staple "$DMG"
        spctl --assess --type open --context context:primary-signature --verbose "$DMG"
    fi
fi

step "Smoke test from the mounted image"
MOUNT=$(mktemp -d)
hdiutil attach -nobrowse -readonly -mountpoint "$MOUNT" "$DMG" >/dev/null
trap 'hdiutil detach "$MOUNT" >/dev/null || true' EXIT
"$VENV/bin/python" packaging/smoke_test.py "$MOUNT/Postroom.app/Contents/MacOS/postroom" \
    --windowed "$MOUNT/Postroom.app/Contents/MacOS/postroom-gui" || fail "smoke test failed"
echo "Built $DMG"
