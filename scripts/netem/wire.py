#!/usr/bin/env python3
"""A userspace netem for one laptop's link, used by scripts/netem/run.sh.

The hub namespace routes every IPv4 packet between one laptop and the station through a
TUN device (policy routing on the incoming veth). This program reads each packet from that
device, impairs it the way `tc qdisc ... netem` would, and writes it back; the kernel then
forwards it on to its destination. Both directions pass through here, and each direction
is impaired independently with the same parameters, as netem on both ends of a veth would.

Impairments (netem's model):
  --loss P         drop each packet with probability P
  --delay-ms D     hold every packet D ms (order kept, as netem without jitter)
  --dup P          send a second copy of a packet with probability P
  --reorder P      with --gap-ms G: a packet is sent at once with probability P, every other
                   packet is held G ms, so the immediate ones overtake (netem's
                   "delay G reorder P")
  --cut-after-bytes N --cut-for S
                   a partition: once the laptop has put N bytes on the link (so a big sync
                   is under way), cut the link both ways for S seconds, then restore it
Signals: SIGUSR1 cuts the link (every packet dropped, both ways), SIGUSR2 restores it,
SIGTERM/SIGINT write the counters to --stats as JSON and exit.

Only IPv4 packets are forwarded; anything else read from the device is dropped.
"""

import argparse
import errno
import fcntl
import heapq
import ipaddress
import json
import os
import random
import select
import signal
import struct
import sys
import time

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000


def open_tun(name):
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    return fd


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dev", required=True, help="TUN device to attach to (persistent)")
    ap.add_argument("--down-net", required=True, help="the laptop's subnet, e.g. 10.77.1.0/24")
    ap.add_argument("--loss", type=float, default=0.0)
    ap.add_argument("--delay-ms", type=float, default=0.0)
    ap.add_argument("--dup", type=float, default=0.0)
    ap.add_argument("--reorder", type=float, default=0.0)
    ap.add_argument("--gap-ms", type=float, default=0.0)
    ap.add_argument("--cut-after-bytes", type=int, default=0)
    ap.add_argument("--cut-for", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--stats", required=True, help="file to write counters to on exit")
    args = ap.parse_args()

    rng = random.Random(args.seed)
    down = ipaddress.ip_network(args.down_net)
    down_addr, down_mask = int(down.network_address), int(down.netmask)
    fd = open_tun(args.dev)

    state = {"cut": False, "stop": False, "first": None, "restore_at": None}
    zero = lambda: {  # noqa: E731
        "packets": 0, "bytes": 0, "lost": 0, "cut": 0, "duplicated": 0,
        "delivered": 0, "delivered_bytes": 0,
    }
    stats = {"up": zero(), "down": zero(), "cuts": 0, "other_dropped": 0}

    def on_cut(*_):
        if not state["cut"]:
            stats["cuts"] += 1
        state["cut"] = True

    def on_restore(*_):
        state["cut"] = False

    def on_stop(*_):
        state["stop"] = True

    signal.signal(signal.SIGUSR1, on_cut)
    signal.signal(signal.SIGUSR2, on_restore)
    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)

    queue = []  # (due, seq, direction, packet)
    seq = 0
    delay = args.delay_ms / 1000.0
    gap = args.gap_ms / 1000.0

    def schedule(now, direction, pkt):
        nonlocal seq
        d = delay
        if args.reorder > 0:
            d += 0.0 if rng.random() < args.reorder else gap
        seq += 1
        heapq.heappush(queue, (now + d, seq, direction, pkt))

    def send(direction, pkt):
        s = stats[direction]
        try:
            os.write(fd, pkt)
            s["delivered"] += 1
            s["delivered_bytes"] += len(pkt)
        except OSError as e:  # device queue full or gone: the packet is lost
            if e.errno not in (errno.EAGAIN, errno.ENOBUFS, errno.EIO, errno.EINVAL):
                raise

    def cut_now(now):
        on_cut()
        state["restore_at"] = now + args.cut_for
        stats["partition"] = {
            "cut_at_s": round(now - state["first"], 3),
            "cut_after_bytes": stats["up"]["bytes"],
            "hold_s": args.cut_for,
        }

    while not state["stop"]:
        now = time.monotonic()
        if state["restore_at"] is not None and now >= state["restore_at"]:
            on_restore()
            state["restore_at"] = None
            stats["partition"]["restored_at_s"] = round(now - state["first"], 3)
        while queue and queue[0][0] <= now:
            _, _, direction, pkt = heapq.heappop(queue)
            if state["cut"]:  # a packet in flight when the link is cut is lost too
                stats[direction]["cut"] += 1
                continue
            send(direction, pkt)
        timeout = max(0.0, queue[0][0] - now) if queue else 0.5
        if state["restore_at"] is not None:
            timeout = max(0.0, min(timeout, state["restore_at"] - now))
        try:
            ready, _, _ = select.select([fd], [], [], timeout)
        except InterruptedError:
            continue
        if not ready:
            continue
        now = time.monotonic()
        for _ in range(256):
            try:
                pkt = os.read(fd, 65535)
            except BlockingIOError:
                break
            if len(pkt) < 20 or pkt[0] >> 4 != 4:
                stats["other_dropped"] += 1
                continue
            dst = struct.unpack("!I", pkt[16:20])[0]
            direction = "down" if dst & down_mask == down_addr else "up"
            s = stats[direction]
            s["packets"] += 1
            s["bytes"] += len(pkt)
            if state["first"] is None:
                state["first"] = now
            if (args.cut_after_bytes and "partition" not in stats
                    and stats["up"]["bytes"] >= args.cut_after_bytes):
                cut_now(now)
            if state["cut"]:
                s["cut"] += 1
                continue
            if args.loss > 0 and rng.random() < args.loss:
                s["lost"] += 1
                continue
            copies = 1
            if args.dup > 0 and rng.random() < args.dup:
                copies = 2
                s["duplicated"] += 1
            for _ in range(copies):
                if delay == 0 and args.reorder == 0:
                    send(direction, pkt)
                else:
                    schedule(now, direction, pkt)

    stats["in_flight_at_exit"] = len(queue)
    tmp = args.stats + ".tmp"
    with open(tmp, "w") as f:
        json.dump(stats, f)
    os.replace(tmp, args.stats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
