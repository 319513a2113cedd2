import { z } from "zod";
import { VNI_MAX, VNI_MIN } from "../vxlan.ts";
import { hostInterfaceName, ipv4 } from "./schema-fields.ts";

/**
 * The inventory keys of the VXLAN overlay (uplink `mode: vxlan`): the
 * underlay on a host's uplink, and a network's `vni`. Sources: RFC 7348
 * (24-bit VNI, UDP port 4789, 50 bytes over IPv4), ip-link(8) `type vxlan`
 * (`local`, `dev`, `dstport`).
 */

/** Uplink keys of vxlan mode (spread into UplinkSpec). */
export const vxlanUplinkShape = {
  underlay: hostInterfaceName
    .optional()
    .describe("vxlan mode: the interface the VXLAN packets leave through (ip-link(8) `dev`), e.g. a NIC of a storage or transport network. Default: none, the route to each peer decides: the management network, where the host's `address` is"),
  underlay_address: ipv4
    .optional()
    .describe("vxlan mode: this host's address on the underlay, the tunnels' source (ip-link(8) `local`) and where the other hosts send this host's VXLAN packets; unique in the site. Default: the host's management `address`"),
};

/** A network's `vni` key (spread into NetworkSpec). */
export const vxlanNetworkShape = {
  vni: z
    .number()
    .int()
    .min(VNI_MIN, `VNI must be ${VNI_MIN}-${VNI_MAX}`)
    .max(VNI_MAX, `VNI must be ${VNI_MIN}-${VNI_MAX}`)
    .optional()
    .describe(`VXLAN Network Identifier, ${VNI_MIN}-${VNI_MAX} (24 bits, RFC 7348), unique in the site: the segment that carries this network between hosts in uplink mode vxlan (UDP port 4789). Default: the network's vlan id`),
};
