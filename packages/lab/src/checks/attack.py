"""Crafted frames for netfleet's attack tier, sent from inside a VM namespace.

    ip netns exec NS /usr/bin/python3 attack.py IFACE COUNT INTERVAL_MS FRAME [FRAME ...]
    ip netns exec NS /usr/bin/python3 attack.py --serve IFACE

Each FRAME is a JSON object: {"kind": K, ...fields}; one function per kind
below builds it with scapy (Debian's python3-scapy 2.5). Every round sends
each frame once, in order, on IFACE (layer 2, nothing is resolved); COUNT
rounds (1-10000), INTERVAL_MS (0-10000) apart. Prints "sent N" and exits 0;
exits 2 on bad arguments. SIGTERM ends a long run early (still "sent N").

--serve: the same, once per line read on stdin, each line a JSON object
{"count": N, "interval_ms": MS, "frames": [FRAME, ...]}, answered by one
line, "sent N" or "error ..."; prints "ready" first and exits at the end of
stdin. (Importing scapy costs a second or more on a busy machine: a row of
the attack tier then costs a line, not an interpreter.)

The addresses all come from the caller (netfleet-lab status): this script
knows nothing of the lab.
"""

import json
import signal
import sys
import time

from scapy.config import conf
from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.dhcp6 import DHCP6_Advertise
from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import IPv6, ICMPv6ND_RA, ICMPv6NDOptPrefixInfo, ICMPv6NDOptSrcLLAddr
from scapy.layers.l2 import ARP, Ether
from scapy.utils import mac2str

BROADCAST = "ff:ff:ff:ff:ff:ff"


def link_local(mac):
    """The EUI-64 link-local IPv6 address of a MAC (RFC 4291 appendix A)."""
    b = bytearray(mac2str(mac))
    b[0] ^= 0x02
    eui = bytes(b[:3]) + b"\xff\xfe" + bytes(b[3:])
    return "fe80::" + ":".join(eui[i:i + 2].hex() for i in range(0, 8, 2))


def udp(src_mac, dst_mac, src_ip, dst_ip, dport, sport=40000, payload="netfleet attack tier"):
    """An IPv4/UDP datagram with any source MAC and address."""
    return Ether(src=src_mac, dst=dst_mac) / IP(src=src_ip, dst=dst_ip, ttl=64) / UDP(sport=sport, dport=dport) / payload.encode()


def arp(op, src_mac, dst_mac, sha, spa, tpa, tha="00:00:00:00:00:00"):
    """An ARP request (op "request"; gratuitous when spa == tpa) or reply (op "reply"), RFC 826 / RFC 5227."""
    return Ether(src=src_mac, dst=dst_mac) / ARP(op=1 if op == "request" else 2, hwsrc=sha, psrc=spa, hwdst=tha, pdst=tpa)


def dhcp_offer(src_mac, dst_mac, src_ip, yiaddr, chaddr, xid=0x6e660001, router=None, dns=None):
    """A DHCPOFFER (RFC 2131: server port 67 to client port 68) naming the sender as router and DNS server."""
    opts = [("message-type", "offer"), ("server_id", src_ip), ("lease_time", 3600), ("subnet_mask", "255.255.255.0"),
            ("router", router or src_ip), ("name_server", dns or src_ip), "end"]
    return (Ether(src=src_mac, dst=dst_mac) / IP(src=src_ip, dst="255.255.255.255") / UDP(sport=67, dport=68)
            / BOOTP(op=2, xid=xid, yiaddr=yiaddr, siaddr=src_ip, chaddr=mac2str(chaddr) + b"\x00" * 10) / DHCP(options=opts))


def ra(src_mac, prefix="2001:db8:6e66::"):
    """An IPv6 router advertisement (RFC 4861 4.2) to all nodes, announcing a default route and a SLAAC prefix."""
    return (Ether(src=src_mac, dst="33:33:00:00:00:01") / IPv6(src=link_local(src_mac), dst="ff02::1", hlim=255)
            / ICMPv6ND_RA(routerlifetime=1800) / ICMPv6NDOptSrcLLAddr(lladdr=src_mac)
            / ICMPv6NDOptPrefixInfo(prefix=prefix, prefixlen=64, validlifetime=3600, preferredlifetime=1800))


def dhcpv6_advertise(src_mac):
    """A DHCPv6 ADVERTISE (RFC 8415: server port 547 to client port 546) to all nodes."""
    return (Ether(src=src_mac, dst="33:33:00:00:00:01") / IPv6(src=link_local(src_mac), dst="ff02::1")
            / UDP(sport=547, dport=546) / DHCP6_Advertise(trid=0x6e66))


def rarp(src_mac, sha=None):
    """A RARP request (ethertype 0x8035, RFC 903) as QEMU announces a guest after a live migration:
    broadcast, sender and target hardware address the guest's MAC, protocol addresses 0.0.0.0."""
    mac = sha or src_mac
    return Ether(src=src_mac, dst=BROADCAST, type=0x8035) / ARP(op=3, hwsrc=mac, psrc="0.0.0.0", hwdst=mac, pdst="0.0.0.0")


KINDS = {"udp": udp, "arp": arp, "dhcp-offer": dhcp_offer, "ra": ra, "dhcpv6-advertise": dhcpv6_advertise, "rarp": rarp}


def build(spec):
    """A frame from its JSON object. Raises ValueError, KeyError or TypeError on a bad one."""
    spec = dict(spec)
    kind = spec.pop("kind")
    return KINDS[kind](**spec)


def rounds(sock, frames, count, interval_ms, stop=()):
    """Sends every frame once per round, `count` rounds `interval_ms` apart; returns how many frames went out."""
    if not 1 <= count <= 10000 or not 0 <= interval_ms <= 10000:
        raise ValueError("count must be 1-10000 and interval_ms 0-10000")
    sent = 0
    for i in range(count):
        if stop:
            break
        for f in frames:
            sock.send(f)
            sent += 1
        if i + 1 < count and interval_ms > 0:
            time.sleep(interval_ms / 1000.0)
    return sent


def serve(iface):
    """One request per stdin line, one answer line each (see the module docstring)."""
    sock = conf.L2socket(iface=iface)
    print("ready", flush=True)
    try:
        for line in sys.stdin:
            if not line.strip():
                continue
            try:
                req = json.loads(line)
                frames = [build(f) for f in req["frames"]]
                print("sent %d" % rounds(sock, frames, int(req.get("count", 1)), int(req.get("interval_ms", 0))), flush=True)
            except Exception as err:  # the answer names it; the next line is served
                print("error %r" % (err,), flush=True)
    finally:
        sock.close()


def usage(msg):
    sys.stderr.write("attack.py: %s\nusage: attack.py IFACE COUNT INTERVAL_MS FRAME_JSON [FRAME_JSON ...]\n" % msg)
    sys.exit(2)


def main(argv):
    if len(argv) == 2 and argv[0] == "--serve":
        serve(argv[1])
        return
    if len(argv) < 4:
        usage("too few arguments")
    iface, count, interval = argv[0], argv[1], argv[2]
    if not count.isdigit() or not 1 <= int(count) <= 10000:
        usage("COUNT must be 1-10000")
    if not interval.isdigit() or int(interval) > 10000:
        usage("INTERVAL_MS must be 0-10000")
    frames = []
    for text in argv[3:]:
        try:
            frames.append(build(json.loads(text)))
        except (ValueError, KeyError, TypeError) as err:
            usage("bad frame %s: %r" % (text[:200], err))
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    sock = conf.L2socket(iface=iface)
    sent = 0
    try:
        sent = rounds(sock, frames, int(count), int(interval), stop)
    finally:
        sock.close()
        print("sent %d" % sent, flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
