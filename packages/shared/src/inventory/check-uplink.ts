import type { Located, Ref, Reporter } from "./report.ts";
import type { Host } from "./model.ts";

/**
 * Uplink settings that only make sense together: `lacp` against the bond
 * mode, and `carries_management` against the uplink mode and the host's
 * and site's management settings. Run on resolved hosts (groups merged);
 * every problem points where the setting was written (`origin`).
 *
 * Sources: Linux Documentation/networking/bonding.rst (802.3ad is LACP:
 * members join an aggregator by exchanging LACPDUs; `lacp_active off`
 * still answers the partner, i.e. passive); ovs-vswitchd.conf.db(5), Port
 * table: `bond_mode` balance-tcp "requires LACP", and without a negotiated
 * aggregate (no lacp-fallback-ab) OVS disables every member, so the bond
 * passes no frame; `lacp` applies to bonds only (a single-interface port
 * has none).
 */

/** Bond modes that negotiate LACP: kernel 802.3ad, OVS balance-tcp. */
export const LACP_BOND_MODES: readonly string[] = ["802.3ad", "balance-tcp"];

/** The bond modes each uplink mode accepts (checkUplink reports the others). */
const MODES_OF: Record<string, readonly string[]> = {
  kernel: ["active-backup", "balance-rr", "balance-xor", "broadcast", "802.3ad", "balance-tlb", "balance-alb"],
  "ovs-trunk": ["active-backup", "balance-slb", "balance-tcp"],
};

/** `lacp` and `carries_management` of every host; problems at the key that set them. */
export function checkUplinkModes(r: Reporter, hosts: Located<Host>[], site: { management: string | undefined; siteRef: Ref | undefined }): void {
  for (const host of hosts) {
    checkLacp(r, host);
    checkManagement(r, host, site);
  }
}

function where(r: Reporter, at: Ref | undefined): string {
  return at ? `at ${r.where(at)}` : "the default";
}

function checkLacp(r: Reporter, { name, ref, value: h, origin }: Located<Host>): void {
  const up = h.uplink;
  const lacpAt = origin?.get("uplink.lacp");
  if (up.lacp === undefined || !lacpAt) return;
  if (!MODES_OF[up.mode]?.includes(up.bond_mode)) return; // the bond mode itself is reported
  const modeAt = origin?.get("uplink.bond_mode");
  if (up.mode === "ovs-trunk" && up.members.length === 1) {
    if (up.lacp !== "off") {
      r.report(lacpAt, `lacp ${up.lacp} on host ${name}: an ovs-trunk uplink with one member is a plain OVS system port, not a bond, and runs no LACP; add a second member to uplink.members, or leave lacp out`);
    }
    return;
  }
  const negotiates = LACP_BOND_MODES.includes(up.bond_mode);
  if (!negotiates && up.lacp !== "off") {
    const want = up.mode === "kernel" ? "802.3ad" : "balance-tcp";
    r.report(
      lacpAt,
      `lacp ${up.lacp} on host ${name}: bond_mode ${up.bond_mode} (${where(r, modeAt)}) does not negotiate LACP, only ${want} does in ${up.mode} mode; set bond_mode: ${want} (the switch ports must then form an LACP aggregate), or leave lacp out`,
    );
  } else if (negotiates && up.lacp === "off") {
    const why = up.bond_mode === "balance-tcp"
      ? "OVS runs balance-tcp only over a negotiated LACP aggregate (ovs-vswitchd.conf.db(5)): without LACP it disables every member and the bond passes no frame"
      : "802.3ad is LACP itself: the kernel puts a member into the aggregator only when it exchanges LACPDUs with the switch (bonding.rst)";
    const other = up.bond_mode === "balance-tcp" ? "balance-slb or active-backup" : "active-backup or balance-xor";
    r.report(lacpAt, `lacp off on host ${name} with bond_mode ${up.bond_mode} (${where(r, modeAt)}): ${why}; set lacp: active (or passive, to only answer the switch), or use bond_mode ${other} when the switch has no LACP`);
  }
}

function checkManagement(r: Reporter, { name, ref, value: h, origin }: Located<Host>, site: { management: string | undefined; siteRef: Ref | undefined }): void {
  const up = h.uplink;
  if (!up.carries_management) return;
  const at = origin?.get("uplink.carries_management") ?? origin?.get("uplink") ?? ref;
  if (up.mode === "vxlan") return; // reported by check-vxlan.ts
  if (up.mode !== "kernel") {
    r.report(
      at,
      `carries_management on host ${name} is not supported in ovs-trunk mode: the agent moves the management address only onto a kernel bond (an OVS trunk would need an internal port for it, which netfleet does not create); use mode: kernel, or keep the management address on an interface outside the uplink and leave carries_management out`,
    );
    return;
  }
  if (h.address === undefined) {
    r.report(at, `carries_management on host ${name} needs the host's address: it is the management address the agent moves onto bond ${up.bond}; set address: on host ${name} (${r.where(ref)})`);
  }
  if (site.management === undefined) {
    r.report(
      at,
      `carries_management on host ${name} needs site.management: its prefix length is the one the address gets on bond ${up.bond}; set management: in site${site.siteRef ? ` (${r.where(site.siteRef)})` : ""}`,
    );
  }
}
