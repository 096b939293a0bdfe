#!/bin/busybox sh
# /init of the e2e-board guest: what a user does on a new board, in order. board.py reads the
# BOARD-* lines from the console; keep their formats in step with parse() there.
# /board.env (written by board.py) sets MARKER, MARKER2, MODS, WATCH_TYPE, WATCH_TARGET, WATCH_CMD.
/bin/busybox --install -s /bin
mkdir -p /proc /sys /dev /tmp
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
. /board.env
# Debian builds the virtio console (and on amd64 virtio itself) as modules.
for m in $MODS; do insmod "/mods/$m.ko" || echo "BOARD-ERROR insmod $m failed"; done
hostname "$MARKER"
echo "BOARD-UNAME $(uname -r) $(uname -m) $(hostname)"

# 1. The self-test.
/kmemd --check > /tmp/check.out 2> /tmp/check.err
rc=$?
while read -r l; do echo "BOARD-CHECK $l"; done < /tmp/check.out
while read -r l; do echo "BOARD-CHECK-ERR $l"; done < /tmp/check.err
echo "BOARD-CHECK-RC $rc"
grep -E ' (init_uts_ns|pid_max)$' /proc/kallsyms | while read -r l; do echo "BOARD-KSYM $l"; done

# 2. Serve the host's GDB on the virtio console standing in for the board's serial port. QEMU
# gives hvc0 to the first virtconsole (unused) and hvc1 to the one wired to the host socket.
HVC=""
i=0
while [ -z "$HVC" ] && [ $i -lt 100 ]; do
  [ -c /dev/hvc1 ] && HVC=/dev/hvc1
  i=$((i + 1))
  [ -z "$HVC" ] && sleep 0.1
done
echo "BOARD-HVC $(ls /dev/hvc* 2>/dev/null | tr '\n' ' ')"
[ -z "$HVC" ] && echo "BOARD-SERVING failed"
if [ -n "$HVC" ]; then
  /kmemd -s "$HVC" > /tmp/serve.log 2>&1 &
  S=$!
  i=0
  while ! grep -q 'serving on serial line' /tmp/serve.log && kill -0 $S 2>/dev/null && [ $i -lt 300 ]; do
    i=$((i + 1))
    sleep 0.1
  done
  if grep -q 'serving on serial line' /tmp/serve.log; then echo "BOARD-SERVING $HVC"; else echo "BOARD-SERVING failed"; fi
  # The host's GDB detaches when it is done; kmemd logs the end of the session.
  i=0
  while ! grep -q -e 'session ended' -e 'GDB went away' /tmp/serve.log && kill -0 $S 2>/dev/null && [ $i -lt 1500 ]; do
    i=$((i + 1))
    sleep 0.2
  done
  kill $S
  wait $S
  while read -r l; do echo "BOARD-SERVE-LOG $l"; done < /tmp/serve.log
fi

# 3. A watchpoint catching a write the guest makes.
/kmemd -w "$WATCH_TYPE" "$WATCH_TARGET" -n 1 -t 120 > /tmp/watch.out 2> /tmp/watch.err &
W=$!
i=0
while ! grep -q 'watching ' /tmp/watch.err && [ $i -lt 300 ]; do i=$((i + 1)); sleep 0.1; done
echo "BOARD-WATCH-ARMED"
sh -c "$WATCH_CMD"
echo "BOARD-HOSTNAME $(hostname)"
wait $W
echo "BOARD-WATCH-RC $?"
while IFS= read -r l; do echo "BOARD-WATCH $l"; done < /tmp/watch.out
while read -r l; do echo "BOARD-WATCH-ERR $l"; done < /tmp/watch.err
echo "BOARD-DONE"
poweroff -f
while true; do sleep 1000; done
