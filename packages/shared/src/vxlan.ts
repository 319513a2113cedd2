
/**
 * VXLAN facts the inventory, the compiler, the agent and the lab share.
 *
 * Sources: RFC 7348 (VXLAN): a 24-bit VNI (§5), the IANA UDP port 4789
 * (§5: "the well-known destination UDP port number 4789"), the
 * encapsulation (outer Ethernet 14 + outer IPv4 20 + UDP 8 + VXLAN 8 = 50
 * bytes over IPv4, §5 figure 1), and the MTU rule of §4.3 (VTEPs "MUST NOT
 * fragment VXLAN packets": the underlay must carry the inner frame plus
 * the headers). ip-link(8) `type vxlan`: Linux's default `dstport` is 8472
 * (the pre-IANA port), so the port is always given.
 */

/** The VXLAN Network Identifier range, 24 bits (RFC 7348 §5); 0 is left unused. */
export const VNI_MIN = 1;
export const VNI_MAX = 16_777_215;

/** IANA's VXLAN UDP port (RFC 7348 §5). */
export const VXLAN_UDP_PORT = 4789;

/**
 * Bytes VXLAN over IPv4 adds to an inner frame's IP MTU: the inner Ethernet
 * header (14) plus outer IPv4 (20), UDP (8) and VXLAN (8) headers (RFC 7348 §5).
 * A network of MTU m needs an underlay MTU of at least m + 50.
 */
export const VXLAN_IPV4_OVERHEAD = 50;

/** The Linux vxlan device that carries `network` on a host in vxlan mode: `vx-<network>` (at most 15 bytes, as br-<network>). */
export function vxlanInterfaceName(network: string): string {
  return `vx-${network}`;
}

/**
 * The largest network MTU a host's uplink carries, in bytes: the uplink mtu
 * itself (kernel, ovs-trunk), or for a vxlan uplink the underlay mtu less
 * the 50 bytes of VXLAN over IPv4 (RFC 7348).
 */
export function carriedMtu(up: { mode: string; mtu: number }): number {
  return up.mode === "vxlan" ? up.mtu - VXLAN_IPV4_OVERHEAD : up.mtu;
}
