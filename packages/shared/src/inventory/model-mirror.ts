import type { ErspanDestination, GreDestination } from "./schema-mirrors.ts";

/**
 * A mirror as the compiler reads it (inventory `mirrors:`, checked by
 * check-mirrors.ts): a network's VM ports, or the whole network, copied
 * through an OVS Mirror (ovs-vswitchd.conf.db(5), table Mirror) to a capture
 * VM's port or to a GRE/ERSPAN tunnel port.
 */
export interface Mirror {
  /** The mirror's name (a network-name-like label, 1-12 characters): the OVS Mirror row's name, and mr-<name> for a tunnel port. */
  name: string;
  network: string;
  /** Source VMs of the network (sorted); absent: the whole network (OVS select_all). */
  vms?: string[];
  /** VM-centric: egress = what the sources send (select_src_port), ingress = what they receive (select_dst_port). */
  direction: "both" | "egress" | "ingress";
  destination: { vm: string } | { gre: GreDestination } | { erspan: ErspanDestination };
}
