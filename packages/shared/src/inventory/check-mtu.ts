import type { Located, Ref, Reporter } from "./report.ts";
import type { Host, Network } from "./model.ts";
import type { NetworkSpec } from "./schema.ts";
import { carriedMtu } from "../vxlan.ts";
import { mtuReason, vxlanMtuNote } from "./check-vxlan.ts";

/** The networks as written and as resolved so far (same order; `mtu` is filled in here), and the resolved hosts. */
export interface MtuInput {
  networks: Located<NetworkSpec>[];
  resolved: Network[];
  hosts: Located<Host>[];
}

/**
 * Resolves each network's MTU and checks it against the hosts carrying it.
 *
 * - An explicit `mtu:` may not exceed the uplink mtu of any carrying host:
 *   a VLAN cannot be larger than the link under it.
 * - Without one, the network gets the smallest uplink mtu of its carriers,
 *   and carriers with different uplink mtus are refused: each host sizes
 *   its own VLAN interfaces and bridges from its uplink, so a 9000-byte
 *   frame from one host reaches a 1500-byte host on the same L2 segment
 *   and is dropped without an ICMP "fragmentation needed" (there is no
 *   router between them: RFC 1191 path MTU discovery cannot help), i.e.
 *   large frames are black-holed. The network's explicit `mtu:` (at most
 *   the smallest) settles it: every host then uses that size for it.
 */
export function resolveMtu(r: Reporter, { networks, resolved, hosts }: MtuInput): void {
  /** Per pair (a host with a larger uplink mtu, the first carrier with the smallest): the networks they share. */
  const mismatches = new Map<string, { high: Located<Host>; low: Located<Host>; networks: { name: string; ref: Ref }[] }>();
  networks.forEach(({ name, value: net, ref }, i) => {
    const carriers = hosts.filter((h) => h.value.networks.includes(name));
    const out = resolved[i]!;
    if (net.mtu === undefined) {
      out.mtu = carriers.length > 0 ? Math.min(...carriers.map((h) => carriedMtu(h.value.uplink))) : 1500;
      const low = carriers.find((h) => carriedMtu(h.value.uplink) === out.mtu);
      for (const high of carriers) {
        if (!low || carriedMtu(high.value.uplink) === out.mtu) continue;
        const key = `${high.name} ${low.name}`;
        const entry = mismatches.get(key) ?? { high, low, networks: [] };
        entry.networks.push({ name, ref });
        mismatches.set(key, entry);
      }
      return;
    }
    out.mtu = net.mtu;
    for (const h of carriers) {
      if (carriedMtu(h.value.uplink) >= net.mtu) continue;
      const at = h.origin?.get("uplink.mtu");
      r.report(
        r.at(ref, "mtu"),
        `mtu ${net.mtu} exceeds the uplink mtu ${carriedMtu(h.value.uplink)}${vxlanMtuNote(h.value.uplink)} of host ${h.name}${at ? ` (${r.where(at)})` : " (the default)"}, which carries ${name}: ${mtuReason(h.value.uplink)}`,
      );
    }
  });
  for (const { high, low, networks: nets } of mismatches.values()) {
    const highAt = high.origin?.get("uplink.mtu");
    const lowAt = low.origin?.get("uplink.mtu");
    const hm = carriedMtu(high.value.uplink);
    const lm = carriedMtu(low.value.uplink);
    const names = nets.map((n) => n.name);
    const list = names.length > 1 ? `networks ${names.join(", ")}` : `network ${names[0]}`;
    const netAt = nets.map((n) => `${n.name} at ${r.where(n.ref)}`).join(", ");
    r.report(
      highAt ?? high.origin?.get("uplink") ?? high.ref,
      `uplink mtu ${hm} of host ${high.name} (${highAt ? `set at ${r.where(highAt)}` : "the default"}) differs from uplink mtu ${lm} of host ${low.name} (${lowAt ? `set at ${r.where(lowAt)}` : "the default"}), and both carry ${list}: frames above ${lm} bytes between them are dropped without an error (black-holed); set mtu: ${lm} (or less) on ${list} (${netAt}) so every host uses that size for ${names.length > 1 ? "them" : "it"}, or give both hosts the same uplink mtu`,
      { key: !highAt },
    );
  }
}
