# dhcp-reply.py <own address> <own MAC>: what a rogue DHCP server in a VM
# sends: a DHCPOFFER (RFC 2131: op BOOTREPLY, magic cookie, option 53 = 2)
# from udp port 67 to the broadcast address, port 68, three times; and, as
# the control, the same datagram from port 1067. Prints what it sent.
import socket
import sys

own, mac = sys.argv[1], bytes.fromhex(sys.argv[2].replace(":", ""))
offer = (
    bytes([2, 1, 6, 0]) + (0x4E46).to_bytes(4, "big") + bytes(4)  # op, htype, hlen, hops, xid, secs, flags
    + bytes(4) + socket.inet_aton("192.168.128.200") + socket.inet_aton(own) + bytes(4)  # ciaddr yiaddr siaddr giaddr
    + mac + bytes(10) + bytes(64) + bytes(128)  # chaddr, sname, file
    + bytes([99, 130, 83, 99, 53, 1, 2, 54, 4]) + socket.inet_aton(own) + bytes([255])
)
for sport in (1067, 67):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    s.bind((own, sport))
    for _ in range(3):
        s.sendto(offer, ("255.255.255.255", 68))
    s.close()
    print(f"sent 3 offers from {own}:{sport} to 255.255.255.255:68")
