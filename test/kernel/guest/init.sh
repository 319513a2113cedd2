#!/bin/bash
# PID 1 in the guest after switch_root: runs /xfer/run.sh (the suite's guest script),
# stores its exit code in /xfer/rc and powers off (qemu runs with -no-reboot, so it exits).
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8
mount -t tmpfs tmpfs /run; mkdir -p /run/lock /run/netns /dev/pts /dev/shm
mount -t devpts devpts /dev/pts; mount -t tmpfs tmpfs /dev/shm
# devtmpfs has no /dev/fd, /dev/stdin...; every real host has them (systemd/udev).
ln -s /proc/self/fd /dev/fd; ln -s /proc/self/fd/0 /dev/stdin; ln -s /proc/self/fd/1 /dev/stdout; ln -s /proc/self/fd/2 /dev/stderr
hostname nfkernel
ip link set lo up
echo "[guest] $(cut -d' ' -f1 /proc/uptime)s running /xfer/run.sh" > /dev/console
bash /xfer/run.sh > /xfer/out.log 2>&1
echo $? > /xfer/rc
echo "[guest] $(cut -d' ' -f1 /proc/uptime)s done rc=$(cat /xfer/rc)" > /dev/console
sync
echo o > /proc/sysrq-trigger
sleep 30
