import { effectivePolicies, type EffectivePolicy, type Inventory } from "@netfleet/shared";

/**
 * The VM part of `netfleet plan`: each VM's effective policy (isolation,
 * cluster groups, allow list, gateway services, extra addresses, bandwidth
 * each way) and where each value came from (shared effective-policy.ts).
 */

/**
 * The policies `netfleet plan` shows: every VM, or with `hosts` (from
 * --host/--limit) only those placed on one of them (a VM without a `host`
 * may run anywhere and is shown with every selection). Pure.
 */
export function plannedPolicies(inventory: Inventory, hosts?: ReadonlySet<string>): EffectivePolicy[] {
  return effectivePolicies(inventory).filter((p) => !hosts || p.host === undefined || hosts.has(p.host));
}

/** Column width of the policy key. */
const KEY_WIDTH = 18;
/** Column width of the value before the source; a longer value pushes the source right. */
const VALUE_WIDTH = 34;

/**
 * The policies as text lines: one head line per VM (`vm1 in alpha on hv1, profile web`), then one line per key,
 * `key  value  <- source`. Names are inventory names (DNS labels, checked at load), so nothing needs escaping.
 */
export function renderPolicies(policies: readonly EffectivePolicy[]): string[] {
  if (policies.length === 0) return [];
  const lines = ["VM policies (effective value <- where it came from: VM, profile, network's profile, network, default):"];
  for (const p of policies) {
    lines.push(`  ${p.vm} in ${p.network}${p.host ? ` on ${p.host}` : ""}${p.profile ? `, profile ${p.profile}` : ""}`);
    for (const e of p.entries) lines.push(`    ${e.key.padEnd(KEY_WIDTH)} ${e.text.padEnd(VALUE_WIDTH)} <- ${e.sourceText}`);
  }
  lines.push("");
  return lines;
}
