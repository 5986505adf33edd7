#!/usr/bin/env bash
# The arm64 proof: `pip install '.[agent,litert]'` and a detection on the demo .tflite (and the demo
# .onnx) in an arm64 Debian userland on an x86-64 machine, under QEMU user-mode emulation.
#
#   sudo packaging/arm64/prove.sh [ROOTFS_DIR]        (default: a new directory under /var/tmp)
#
# What it does, in order (each step skipped when a previous run already did it in ROOTFS_DIR):
#   1. checks for a static qemu-aarch64 of version 8 or later: QEMU 7.2 (Debian 12's qemu-user-static)
#      is reported to crash ONNX Runtime on arm64; QEMU 10 (Debian 13's qemu-user) runs it;
#   2. makes the kernel run aarch64 binaries with it (binfmt_misc, flag F so it works inside the chroot),
#      unless an aarch64 handler is registered already; a handler it registers is removed on exit;
#   3. `debootstrap --arch arm64 --foreign` (SUITE, default bookworm, Raspberry Pi OS's base), then the
#      second stage inside the chroot, under emulation;
#   4. copies this checkout (tracked and untracked files, not ignored ones) into the chroot, makes a venv
#      there and installs '.[agent,litert]' from PyPI's aarch64 wheels;
#   5. runs `fieldtui-agent doctor`, `fieldtui-agent detect` on a demo scene with the float32 .tflite,
#      then packaging/arm64/detect.py on the demo .onnx (ONNX Runtime) and both demo .tflite files
#      (LiteRT): detections, F1 against the ONNX model, and a p50 that is the EMULATOR's speed, not an
#      Arm CPU's (useful only to compare runtimes under the same emulator).
#
# QEMU 10 on a Debian 12 host without installing it: fetch Debian 13's qemu-user package (its binaries
# are static; `apt-get download qemu-user` with a trixie sources list, or from the mirror's pool), unpack
# it with `dpkg-deb -x qemu-user_*.deb /tmp/q` and pass QEMU=/tmp/q/usr/bin/qemu-aarch64.
#
# Environment: QEMU (a static qemu-aarch64; default qemu-aarch64-static or qemu-aarch64 on PATH),
# SUITE, MIRROR (default http://deb.debian.org/debian), DEBOOTSTRAP (default debootstrap), RUNS (timed
# calls per model, default 20), PIP_CERT (a CA bundle for pip inside the chroot; default the host's
# /etc/ssl/certs/ca-certificates.crt, so a proxy the host trusts is trusted there too).
# Needs root (debootstrap, chroot, mounts), debootstrap, ~1.5 GB of disk and the network to Debian's
# mirror and PyPI. Not part of the test suite or CI: it takes 15-60 minutes (one run on 2 busy x86-64
# cores: 49 min for the userland, 5.5 for the install, 6 for the detections).
set -euo pipefail

REPO=$(cd "$(dirname "$0")/../.." && pwd)
ROOT=${1:-$(mktemp -d /var/tmp/fieldtui-arm64.XXXXXX)}
SUITE=${SUITE:-bookworm}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
DEBOOTSTRAP=${DEBOOTSTRAP:-debootstrap}
RUNS=${RUNS:-20}
CERT=${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}
BINFMT=/proc/sys/fs/binfmt_misc
HANDLER=fieldtui-aarch64
say() { printf '\n== %s\n' "$*"; }
die() { printf 'prove.sh: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run it as root (debootstrap, chroot and mounts need it): sudo $0 $*"
command -v "$DEBOOTSTRAP" >/dev/null || die "no debootstrap: apt-get install debootstrap (or set DEBOOTSTRAP)"

mounted=()
registered=""
cleanup() {
	local i
	for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do umount -l "${mounted[i]}" 2>/dev/null || true; done
	if [ -n "$registered" ] && [ -e "$BINFMT/$HANDLER" ]; then echo -1 >"$BINFMT/$HANDLER"; fi
}
trap cleanup EXIT

# --- 1. the emulator --------------------------------------------------------------------------------
if [ "$(uname -m)" = aarch64 ]; then
	say "this machine is aarch64: no emulation, the figures below are this CPU's"
else
	QEMU=${QEMU:-$(command -v qemu-aarch64-static || command -v qemu-aarch64 || true)}
	[ -n "$QEMU" ] && [ -x "$QEMU" ] || die "no qemu-aarch64: install Debian 13's qemu-user (QEMU 10; its binaries are static) or set QEMU=/path/to/qemu-aarch64"
	file -L "$QEMU" | grep -q 'static' || die "$QEMU is not statically linked: it cannot run inside the chroot"
	version=$("$QEMU" --version | sed -n 's/.*version \([0-9]*\)\..*/\1/p;q')
	[ "${version:-0}" -ge 8 ] || die "$QEMU is QEMU ${version:-?}: QEMU 7.2 (Debian 12) is reported to crash ONNX Runtime on arm64; use QEMU 10 (Debian 13's qemu-user)"
	say "emulator: $("$QEMU" --version | head -1)"

	# --- 2. binfmt_misc ---------------------------------------------------------------------------------
	if [ ! -e "$BINFMT/register" ]; then
		mount -t binfmt_misc binfmt_misc "$BINFMT"
		mounted+=("$BINFMT")
	fi
	existing=$(grep -l '^magic 7f454c460201010000000000000000000200b700' "$BINFMT"/* 2>/dev/null | head -1 || true)
	if [ -n "$existing" ] && grep -q '^enabled' "$existing"; then
		say "aarch64 binaries already run by $(sed -n 's/^interpreter //p' "$existing") ($existing)"
	else
		# The registration qemu's own scripts/qemu-binfmt-conf.sh writes for aarch64, flags F (the kernel
		# opens the interpreter now, so the chroot needs no copy of it), P (keep argv[0]) and C.
		printf ':%s:M::%s:%s:%s:FPC\n' "$HANDLER" \
			'\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00' \
			'\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff' \
			"$QEMU" >"$BINFMT/register"
		registered=1
		say "registered $QEMU for aarch64 binaries (removed again on exit)"
	fi
fi

# --- 3. the arm64 Debian userland -------------------------------------------------------------------
started=$(date +%s)
if [ ! -e "$ROOT/.fieldtui-userland" ]; then
	say "debootstrap --arch arm64 --foreign $SUITE into $ROOT"
	"$DEBOOTSTRAP" --arch arm64 --foreign --variant=minbase \
		--include=python3,python3-venv,ca-certificates,libgomp1 "$SUITE" "$ROOT" "$MIRROR"
	say "second stage, inside the chroot (emulated)"
	chroot "$ROOT" /debootstrap/debootstrap --second-stage
	touch "$ROOT/.fieldtui-userland"
fi
for fs in proc dev sys; do
	mount --bind "/$fs" "$ROOT/$fs"
	mounted+=("$ROOT/$fs")
done
cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
[ -r "$CERT" ] && cp "$CERT" "$ROOT/etc/fieldtui-pip-ca.crt"
in_root() { chroot "$ROOT" /usr/bin/env -i HOME=/root PATH=/opt/fieldtui/venv/bin:/usr/bin:/bin \
	PIP_CERT=/etc/fieldtui-pip-ca.crt PIP_DISABLE_PIP_VERSION_CHECK=1 "$@"; }
say "userland: $(in_root uname -m), $(in_root sh -c '. /etc/os-release; echo $PRETTY_NAME'), $(in_root python3 --version)"

# --- 4. the install -----------------------------------------------------------------------------------
say "copying this checkout and installing '.[agent,litert]' (aarch64 wheels from PyPI)"
rm -rf "$ROOT/opt/fieldtui/src"
mkdir -p "$ROOT/opt/fieldtui/src"
git -C "$REPO" ls-files -co --exclude-standard -z | (cd "$REPO" && xargs -0 tar -cf - --) | tar -xf - -C "$ROOT/opt/fieldtui/src"
[ -x "$ROOT/opt/fieldtui/venv/bin/python" ] || in_root python3 -m venv /opt/fieldtui/venv
t0=$(date +%s)
in_root pip install --quiet '/opt/fieldtui/src[agent,litert]'
say "installed in $(($(date +%s) - t0)) s: $(in_root pip list 2>/dev/null | grep -iE '^(fieldtui|onnxruntime|ai-edge-litert|numpy|opencv-python-headless) ' | tr -s ' ' | paste -sd, -)"

# --- 5. detections --------------------------------------------------------------------------------------
assets=$(in_root python -c 'from agent.inference.detector import demo_model_path; print(demo_model_path().parent)')
detect="python /opt/fieldtui/src/packaging/arm64/detect.py --runs $RUNS"
say "fieldtui-agent doctor"
in_root sh -c 'cd /tmp && fieldtui-agent doctor'
say "ONNX Runtime on the demo .onnx"
if in_root sh -c "cd /tmp && $detect --backend onnxruntime --model $assets/demo.onnx --save /tmp/onnx.json --jpeg /tmp/scene.jpg"; then
	reference="--reference /tmp/onnx.json"
else
	echo "ONNX Runtime failed under this emulator (exit $?): the LiteRT runs below have no reference"
	reference=""
	in_root sh -c "cd /tmp && $detect --backend litert --model $assets/demo_float32.tflite --runs 1 --jpeg /tmp/scene.jpg" >/dev/null
fi
say "fieldtui-agent detect on a demo scene, LiteRT float32"
in_root sh -c "cd /tmp && fieldtui-agent detect --backend litert --model $assets/demo_float32.tflite /tmp/scene.jpg"
say "LiteRT on the demo .tflite, float32 and INT8"
in_root sh -c "cd /tmp && $detect --backend litert --model $assets/demo_float32.tflite $reference"
in_root sh -c "cd /tmp && $detect --backend litert --model $assets/demo_int8.tflite $reference"
say "done in $(($(date +%s) - started)) s; the userland stays in $ROOT (delete it with: rm -rf $ROOT)"
