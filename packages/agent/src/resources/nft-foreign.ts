import { z } from "zod";
import { parseJson } from "./tool-json.ts";

/**
 * Other nftables tables that may drop what our table accepts. A packet is
 * seen by every base chain on its hook, in priority order, and a `drop` in
 * any of them is final (nft(8), "CHAINS": an accept only ends the current
 * base chain). So our table accepting a VM's traffic means nothing if, say,
 * Docker's iptables-nft `ip filter FORWARD` chain has `policy drop` and no
 * rule that accepts our interfaces.
 *
 * Looked at: base chains of other tables on the `forward` hook (our
 * networks' routed traffic) and the `input` hook (DHCP, DNS and gateway
 * services from our VMs), and the regular chains they jump or go to.
 * Reported (one note each, never blocking):
 * - a base chain with `policy drop` unless, for every interface of ours,
 *   some rule of that table accepts on `iifname`/`oifname` naming it;
 * - a rule whose verdict is drop or reject, unless it is limited to other
 *   interfaces (an `iifname`/`oifname`/`iif`/`oif` == match naming none of
 *   ours) or to `ct state invalid` (which we drop too).
 * iptables-legacy rules (x_tables) are not visible to nft and not seen here.
 */

/** Stable prefix of the notes (see packages/shared/src/protocol/warnings.ts). */
export const FOREIGN_DROP = "foreign-drop:";

const NftRuleset = z.object({ nftables: z.array(z.record(z.string(), z.unknown())) });

interface ChainInfo {
  family: string;
  table: string;
  name: string;
  hook?: string;
  prio?: number;
  policy?: string;
}
interface RuleInfo {
  family: string;
  table: string;
  chain: string;
  handle?: number;
  /** The rule's comment (`comment "..."` in nft(8)): ours carry `netfleet-owner=<site>` (types.ts ownerMarker). */
  comment?: string;
  expr: Record<string, unknown>[];
}

const IFACE_KEYS = new Set(["iifname", "oifname", "iif", "oif"]);

/** The interface names a `meta iifname/oifname/iif/oif` match names, with its op; undefined for other matches. */
function interfaceMatch(e: Record<string, unknown>): { key: string; op: string; names: string[] } | undefined {
  const m = e.match as { op?: string; left?: { meta?: { key?: string } }; right?: unknown } | undefined;
  const key = m?.left?.meta?.key;
  if (!m || !key || !IFACE_KEYS.has(key)) return undefined;
  const right = m.right;
  const names =
    typeof right === "string"
      ? [right]
      : Array.isArray((right as { set?: unknown[] })?.set)
        ? ((right as { set: unknown[] }).set.filter((x) => typeof x === "string") as string[])
        : [];
  return { key, op: m.op ?? "==", names };
}

/** Whether an interface pattern as nft prints it (`eth0`, `docker*`) names `ifname`. */
function names(pattern: string, ifname: string): boolean {
  return pattern.endsWith("*") ? ifname.startsWith(pattern.slice(0, -1)) : pattern === ifname;
}

function verdictOf(expr: Record<string, unknown>[]): "drop" | "reject" | "accept" | undefined {
  for (const e of expr) {
    if ("drop" in e) return "drop";
    if ("reject" in e) return "reject";
    if ("accept" in e) return "accept";
  }
  return undefined;
}

function jumpsOf(expr: Record<string, unknown>[]): string[] {
  const out: string[] = [];
  for (const e of expr) {
    const j = (e.jump ?? e.goto) as { target?: string } | undefined;
    if (j?.target) out.push(j.target);
  }
  return out;
}

const onlyInvalid = (expr: Record<string, unknown>[]) =>
  expr.some((e) => {
    const m = e.match as { left?: { ct?: { key?: string } }; right?: unknown } | undefined;
    const r = m?.right;
    return m?.left?.ct?.key === "state" && (r === "invalid" || (Array.isArray(r) && r.length === 1 && r[0] === "invalid"));
  });

/**
 * Notes on foreign tables that may drop our traffic, from `nft -j list
 * ruleset` (nft 1.0.6 JSON). `ours` are our networks' interface names.
 * Each note begins with `foreign-drop: table <family> <table> chain <chain>`;
 * the shapes are
 * `foreign-drop: table ip filter chain FORWARD (hook forward, priority 0, policy drop)` and
 * `foreign-drop: table ip filter chain DOCKER (from FORWARD, hook forward, priority 0): rule handle 7 drops`.
 * A drop rule carrying `ownMark` as its comment is ours, not foreign: the
 * source filter of a VXLAN device (`inet netfleet-vx-<network>`,
 * vxlan-interface-filter.ts) drops VXLAN from non-VTEPs on the input hook.
 * Throws ParseError when the output is not nft JSON.
 */
export function foreignDrops(rulesetJson: string, ours: readonly string[], self = { family: "inet", table: "netfleet" }, ownMark?: string): string[] {
  const doc = parseJson("nft -j list ruleset", rulesetJson, NftRuleset);
  const chains: ChainInfo[] = [];
  const rules: RuleInfo[] = [];
  for (const item of doc.nftables) {
    if (item.chain) chains.push(item.chain as ChainInfo);
    if (item.rule) rules.push(item.rule as RuleInfo);
  }
  const notes: string[] = [];
  if (!ours.length) return notes;
  const key = (c: { family: string; table: string }) => `${c.family} ${c.table}`;
  for (const base of chains) {
    if (key(base) === key(self) || (base.hook !== "forward" && base.hook !== "input")) continue;
    const where = `table ${base.family} ${base.table} chain ${base.name}`;
    const tableRules = rules.filter((r) => key(r) === key(base));
    if (base.policy === "drop") {
      const accepted = (ifname: string) =>
        tableRules.some((r) => verdictOf(r.expr) === "accept" && r.expr.some((e) => {
          const m = interfaceMatch(e);
          return m !== undefined && m.op === "==" && m.names.some((p) => names(p, ifname));
        }));
      if (!ours.every(accepted)) notes.push(`${FOREIGN_DROP} ${where} (hook ${base.hook}, priority ${base.prio ?? 0}, policy drop)`);
    }
    // The base chain and every chain it reaches by jump/goto, each once.
    const seen = new Set<string>();
    const walk = (chain: string, from: string | undefined) => {
      if (seen.has(chain)) return;
      seen.add(chain);
      for (const r of tableRules.filter((x) => x.chain === chain)) {
        for (const t of jumpsOf(r.expr)) walk(t, chain === base.name ? base.name : (from ?? base.name));
        const v = verdictOf(r.expr);
        if (v !== "drop" && v !== "reject") continue;
        if (onlyInvalid(r.expr)) continue;
        if (ownMark !== undefined && r.comment === ownMark) continue;
        const scoped = r.expr.some((e) => {
          const m = interfaceMatch(e);
          return m !== undefined && m.op === "==" && !ours.some((i) => m.names.some((p) => names(p, i)));
        });
        if (scoped) continue;
        const at = chain === base.name ? `table ${base.family} ${base.table} chain ${chain} (hook ${base.hook}, priority ${base.prio ?? 0})` : `table ${base.family} ${base.table} chain ${chain} (from ${from ?? base.name}, hook ${base.hook}, priority ${base.prio ?? 0})`;
        notes.push(`${FOREIGN_DROP} ${at}: rule handle ${r.handle ?? "?"} ${v === "drop" ? "drops" : "rejects"}`);
      }
    };
    walk(base.name, undefined);
  }
  return [...new Set(notes)];
}
