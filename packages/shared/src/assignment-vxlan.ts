import { z } from "zod";
import { Ipv4Address } from "./ipv4.ts";
import { INTERFACE_NAME, MAC_ADDRESS } from "./names.ts";
import { VNI_MAX, VNI_MIN } from "./vxlan.ts";

/**
 * A Linux VXLAN device (ip-link(8) `type vxlan`) that carries one network
 * between the site's hosts over an IPv4 underlay, marked as ours by its
 * alias like the other links we create. Broadcast, unknown unicast and
 * multicast frames go to every `remotes` address (head-end replication:
 * one all-zeros forwarding entry per remote, bridge(8) `fdb append`). The
 * device learns nothing from what it receives (ip-link(8) `nolearning`):
 * unicast to a MAC of the inventory goes to its holder by a static entry
 * (`macs`), and only the remotes may send into its VNI (an nft table of
 * the device's own drops UDP `port` with this VNI from anyone else). On a
 * VM host it is the network bridge's uplink port (an OVS system port); on
 * the backend the gateway address lives on it.
 */
export const VxlanInterfaceSpec = z.strictObject({
  kind: z.literal("vxlan-interface"),
  name: z.string().regex(INTERFACE_NAME),
  /** The VXLAN Network Identifier, 1-16777215 (RFC 7348 §5). */
  vni: z.number().int().min(VNI_MIN).max(VNI_MAX),
  /** This host's underlay address: the source address of the tunnel's packets (ip-link `local`). */
  local: Ipv4Address,
  /** The interface the tunnel's packets leave through (ip-link `dev`); absent: the route to each remote decides. */
  underlay: z.string().regex(INTERFACE_NAME).optional(),
  /** UDP destination port (ip-link `dstport`), 4789 (IANA, RFC 7348) unless said. */
  port: z.number().int().min(1).max(65535),
  /** The other hosts' underlay addresses carrying this network, sorted, without `local`. */
  remotes: z.array(Ipv4Address),
  /**
   * Static unicast forwarding entries (bridge(8) `fdb replace MAC dev NAME
   * dst ADDR`): each MAC on this network held by another host (its VMs,
   * the backend's gateway) and that host's underlay address, sorted by MAC.
   * Optional (protocol 1.4); absent: none, so unicast to other hosts'
   * MACs is flooded to every remote.
   */
  macs: z.array(z.strictObject({ mac: z.string().regex(MAC_ADDRESS), dst: Ipv4Address })).optional(),
  /** MTU of the device: the network's MTU (the underlay must carry it plus 50 bytes). */
  mtu: z.number().int().min(68).max(9216),
});

export type VxlanInterfaceSpec = z.output<typeof VxlanInterfaceSpec>;
