import type { VxlanInterfaceSpec } from "@netfleet/shared";
import { ExecError, mutate, type Command } from "../exec/runner.ts";
import { normaliseListing } from "./nft-live.ts";
import { byAddress } from "./vxlan-interface-fdb.ts";
import { ownerMarker, type ObserveContext } from "./types.ts";

/**
 * The source filter of one VXLAN device: its own nft table, `inet
 * netfleet-<device>` (e.g. `netfleet-vx-secure`), whose input chain drops
 * every UDP packet to the device's port carrying the device's VNI that does
 * not come from one of its remotes (the other hosts carrying the network).
 *
 * Why: VXLAN has no authentication (RFC 7348 §7) and the Linux vxlan driver
 * checks neither the outer source nor the outer destination address of
 * what it receives (measured on Linux 6.18: a frame from an address that is
 * no remote, sent to any of the host's addresses, even one on another
 * interface, is decapsulated and delivered; ip-link(8)'s `local` only sets
 * the source of what the device sends). The device's UDP socket receives
 * after netfilter's input hook, so a drop there never reaches it.
 *
 * Why one table per device: VM hosts have no table of ours otherwise; the
 * table lives and goes with the device (prune removes the tables of devices
 * it removes, vxlan-interface-prune.ts); each table only speaks for its own
 * VNI, so the tables of two devices with different remotes never drop each
 * other's packets. The VNI is matched as raw payload (nft(8) "RAW PAYLOAD
 * EXPRESSION": `@th,96,24`, the 24 bits at byte 4 of the VXLAN header that
 * follows the 8-byte UDP header, RFC 7348 §5), which nft 1.0.6 has; its
 * listing prints the value in hex, so it is written in hex.
 *
 * What it cannot stop: a packet whose outer source is forged to a remote's
 * address. That is the underlay's job (keep it to the site's hosts, or
 * anti-spoofing on its switch), as RFC 7348 §7 says.
 */

/** The nft table of device `device` (family inet): `netfleet-<device>`. */
export function filterTableName(device: string): string {
  return `netfleet-${device}`;
}

/** The table's rule that drops what does not come from a remote, in the form `nft list` prints it (counter values aside). */
export function filterRule(spec: Pick<VxlanInterfaceSpec, "vni" | "port" | "remotes">, owner: string): string {
  const remotes = [...new Set(spec.remotes)].sort(byAddress);
  const from = remotes.length === 0 ? "" : remotes.length === 1 ? ` ip saddr != ${remotes[0]}` : ` ip saddr != { ${remotes.join(", ")} }`;
  return `udp dport ${spec.port} @th,96,24 0x${spec.vni.toString(16)}${from} counter drop comment "${ownerMarker(owner)}"`;
}

/** The whole table as `nft -f` text (and as `nft list table` prints it, counters aside). */
export function filterTable(spec: Pick<VxlanInterfaceSpec, "name" | "vni" | "port" | "remotes">, owner: string): string {
  return [
    `table inet ${filterTableName(spec.name)} {`,
    "\tchain input {",
    "\t\ttype filter hook input priority filter; policy accept;",
    `\t\t${filterRule(spec, owner)}`,
    "\t}",
    "}",
    "",
  ].join("\n");
}

/** What the agent reads of the filter: whether the table exists, and its listing normalised (nft-live.ts normaliseListing: counters, handles, set order). */
export interface FilterObservation {
  exists: boolean;
  lines: string[];
}

/** The desired table's normalised lines. */
export function desiredFilterLines(spec: Pick<VxlanInterfaceSpec, "name" | "vni" | "port" | "remotes">, owner: string): string[] {
  return normaliseListing(filterTable(spec, owner));
}

/**
 * Reads `nft list table inet netfleet-<device>`. A missing table (nft: "No
 * such file or directory") is `exists: false`.
 * @throws Error naming the Debian package when nft is not installed (hosts in vxlan mode need it), or on any other failure of nft.
 */
export async function observeFilter(device: string, ctx: ObserveContext): Promise<FilterObservation> {
  let out;
  try {
    out = await ctx.read(["nft", "list", "table", "inet", filterTableName(device)], { allowFailure: true });
  } catch (err) {
    if (err instanceof ExecError && err.exitCode === 127 && /\bENOENT\b/.test(err.stderr)) {
      throw new Error(`nft is not installed: a host in uplink mode vxlan needs it for ${device}'s source filter (Debian package nftables)`);
    }
    throw err;
  }
  if (out.exitCode !== 0) {
    if (/No such file or directory/.test(out.stderr)) return { exists: false, lines: [] };
    throw new Error(`nft list table inet ${filterTableName(device)} exited ${out.exitCode}: ${out.stderr.trim()}`);
  }
  return { exists: true, lines: normaliseListing(out.stdout) };
}

/** Whether the live table carries our owner mark (its rule's comment). */
export function filterIsOurs(obs: FilterObservation, owner: string): boolean {
  return obs.lines.some((l) => l.includes(`comment "${ownerMarker(owner)}"`));
}

/**
 * The command that makes the table as desired, atomically (one `nft -f -`
 * transaction: create-or-keep, delete, create), or none when it already is.
 */
export function filterCommands(spec: Pick<VxlanInterfaceSpec, "name" | "vni" | "port" | "remotes">, obs: FilterObservation, owner: string): Command[] {
  const want = desiredFilterLines(spec, owner);
  if (obs.exists && obs.lines.join("\n") === want.join("\n")) return [];
  const name = filterTableName(spec.name);
  return [mutate(["nft", "-f", "-"], `table inet ${name} {}\ndelete table inet ${name}\n${filterTable(spec, owner)}`)];
}
