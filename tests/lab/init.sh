#!/bin/busybox sh
# /init of a kernel-lab guest (tests/lab/labd.py builds the initramfs). It sets up what a small
# board has (proc, sys, devtmpfs, debugfs, the virtio console modules), then runs the lab agent on
# the virtio serial port named "agent" for the host's tests. Lines starting LAB- on the console are
# read by labd.py.
/bin/busybox --install -s /bin
mkdir -p /proc /sys /dev /tmp
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
. /lab/lab.env
export PATH=/lab:/bin
for m in $MODS; do insmod "/lab/mods/$m.ko" || echo "LAB-ERROR insmod $m failed"; done
hostname lab
# The agent's port and the stream port: the virtio serial ports QEMU named "agent" and "stream"
# (no udev here to make the /dev/virtio-ports/NAME links).
AGENT=""
STREAM=""
i=0
while { [ -z "$AGENT" ] || [ -z "$STREAM" ]; } && [ $i -lt 100 ]; do
  for n in /sys/class/virtio-ports/*/name; do
    case "$(cat "$n" 2>/dev/null)" in
      agent) AGENT=/dev/$(basename "$(dirname "$n")") ;;
      stream) STREAM=/dev/$(basename "$(dirname "$n")") ;;
    esac
  done
  i=$((i + 1))
  { [ -z "$AGENT" ] || [ -z "$STREAM" ]; } && sleep 0.1
done
[ -n "$STREAM" ] && ln -s "$STREAM" /dev/lab-stream
echo "LAB-UNAME $(uname -r) $(uname -m)"
echo "LAB-HVC $(ls /dev/hvc* 2>/dev/null | tr '\n' ' ') agent=$AGENT stream=$STREAM"
# PID 1 must never exit (that panics the guest): restart the agent if it ever stops.
while true; do
  /lab/agent "$AGENT"
  echo "LAB-AGENT-EXIT $?"
  sleep 1
done
