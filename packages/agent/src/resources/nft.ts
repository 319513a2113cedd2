import { z } from "zod";
import { sha256Hex, type EgressRule, type NftTableSpec } from "@netfleet/shared";
import { ExecError, mutate } from "../exec/runner.ts";
import { parseJson } from "./ip-link.ts";
import type { Changes, ObserveContext, ResourceHandler, ResourcePlan } from "./types.ts";

/** The static allow sets, by protocol: `vm . destination . port`, or `vm . destination` for all ports. */
export const STATIC_SETS = ["allow_tcp", "allow_udp", "allow_all_tcp", "allow_all_udp"] as const;
type StaticSet = (typeof STATIC_SETS)[number];

export interface NftObservation {
  exists: boolean;
  structure?: string;
  elements: Record<StaticSet, string[]>;
}

const MARK = "netfleet structure=";

const bare = (addr: string) => addr.replace(/\/32$/, "");

/** Elements of the static sets, as nft prints them (`a . b . 80`, `a . b/28`). */
export function desiredElements(spec: NftTableSpec): Record<StaticSet, string[]> {
  const out: Record<StaticSet, string[]> = { allow_tcp: [], allow_udp: [], allow_all_tcp: [], allow_all_udp: [] };
  for (const r of spec.allow) {
    if (!r.to) continue;
    if (r.ports?.length) for (const p of r.ports) out[`allow_${r.proto}`].push(`${r.vm} . ${bare(r.to)} . ${p}`);
    else out[`allow_all_${r.proto}`].push(`${r.vm} . ${bare(r.to)}`);
  }
  for (const k of STATIC_SETS) out[k] = [...new Set(out[k])].sort();
  return out;
}

function quote(name: string): string {
  return `"${name}"`;
}

/**
 * The table's chains and sets without the static set elements. Its hash,
 * kept in a rule comment, tells whether the structure changed (replace the
 * table atomically) or only the allow lists did (edit the sets in place,
 * so established connections and dnsmasq's resolved addresses survive).
 */
export function nftStructure(spec: NftTableSpec): string {
  const ext = quote(spec.externalInterfaces[0]!);
  const ifaces = spec.networks.map((n) => quote(n.interface)).join(", ");
  const L: string[] = [];
  L.push("table inet netfleet {");
  L.push("  set allow_tcp { type ipv4_addr . ipv4_addr . inet_service; flags interval; }");
  L.push("  set allow_udp { type ipv4_addr . ipv4_addr . inet_service; flags interval; }");
  L.push("  set allow_all_tcp { type ipv4_addr . ipv4_addr; flags interval; }");
  L.push("  set allow_all_udp { type ipv4_addr . ipv4_addr; flags interval; }");
  for (const s of spec.dnsSets) L.push(`  set ${s} { type ipv4_addr; flags timeout; timeout 1h; }`);
  // What VMs may ask of the backend itself: DHCP, and DNS and ping on their own gateway only.
  L.push("  chain input {");
  L.push("    type filter hook input priority filter; policy accept;");
  if (spec.networks.length) L.push(`    iifname { ${ifaces} } jump from_vms`);
  L.push("  }");
  L.push("  chain from_vms {");
  L.push("    ct state established,related accept");
  L.push("    udp sport 68 udp dport 67 accept");
  for (const n of spec.networks) {
    const i = quote(n.interface);
    L.push(`    iifname ${i} ip daddr ${n.gateway} udp dport 53 accept`);
    L.push(`    iifname ${i} ip daddr ${n.gateway} tcp dport 53 accept`);
    L.push(`    iifname ${i} ip daddr ${n.gateway} icmp type echo-request accept`);
  }
  L.push("    counter drop");
  L.push("  }");
  L.push("  chain forward {");
  L.push("    type filter hook forward priority filter; policy drop;");
  L.push(`    ct state established,related accept comment "${MARK}@HASH@"`);
  L.push("    ct state invalid drop");
  for (const f of spec.forwards) {
    L.push(`    iifname ${ext} oifname ${quote(f.interface)} ip daddr ${f.vm} ${f.proto} dport ${f.port} ct status dnat accept`);
  }
  for (const n of spec.networks) {
    const i = quote(n.interface);
    if (n.egress === "open") {
      L.push(`    iifname ${i} oifname ${ext} accept`);
      continue;
    }
    L.push(`    iifname ${i} oifname ${ext} ip saddr . ip daddr . tcp dport @allow_tcp accept`);
    L.push(`    iifname ${i} oifname ${ext} ip saddr . ip daddr . udp dport @allow_udp accept`);
    L.push(`    iifname ${i} oifname ${ext} meta l4proto tcp ip saddr . ip daddr @allow_all_tcp accept`);
    L.push(`    iifname ${i} oifname ${ext} meta l4proto udp ip saddr . ip daddr @allow_all_udp accept`);
  }
  for (const r of spec.allow.filter((x): x is EgressRule & { set: string } => x.set !== undefined)) {
    const n = spec.networks.find((x) => x.cidr && inCidrText(r.vm, x.cidr));
    if (!n) continue;
    const ports = r.ports?.length ? ` ${r.proto} dport { ${r.ports.join(", ")} }` : ` meta l4proto ${r.proto}`;
    L.push(`    iifname ${quote(n.interface)} oifname ${ext} ip saddr ${r.vm} ip daddr @${r.set}${ports} accept`);
  }
  // Networks never reach each other, nor anything else: the policy drops.
  L.push("    counter drop");
  L.push("  }");
  L.push("  chain prerouting {");
  L.push("    type nat hook prerouting priority dstnat; policy accept;");
  for (const f of spec.forwards) L.push(`    iifname ${ext} ${f.proto} dport ${f.listen} dnat ip to ${f.vm}:${f.port}`);
  L.push("  }");
  L.push("  chain postrouting {");
  L.push("    type nat hook postrouting priority srcnat; policy accept;");
  const nat = spec.networks.map((n) => n.cidr);
  if (nat.length) L.push(`    oifname ${ext} ip saddr { ${nat.join(", ")} } masquerade`);
  L.push("  }");
  L.push("}");
  return L.join("\n") + "\n";
}

function inCidrText(ip: string, cidr: string): boolean {
  const [net, len] = cidr.split("/");
  const toInt = (a: string) => a.split(".").reduce((n, o) => (n << 8) + Number(o), 0) >>> 0;
  const bits = Number(len ?? 32);
  const mask = bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
  return ((toInt(ip) & mask) >>> 0) === ((toInt(net!) & mask) >>> 0);
}

/** The full ruleset file: create-or-keep, delete, recreate — one atomic `nft -f` transaction. */
export function nftRuleset(spec: NftTableSpec): { text: string; hash: string } {
  const structure = nftStructure(spec);
  const hash = sha256Hex(structure).slice(0, 16);
  const elements = desiredElements(spec);
  let body = structure.replace("@HASH@", hash);
  for (const set of STATIC_SETS) {
    if (elements[set].length) body += `add element inet netfleet ${set} { ${elements[set].join(", ")} }\n`;
  }
  return { text: `table inet netfleet {}\ndelete table inet netfleet\n${body}`, hash };
}

const NftJson = z.object({ nftables: z.array(z.record(z.string(), z.unknown())) });

function elementText(e: unknown): string {
  if (typeof e === "string" || typeof e === "number") return String(e);
  const o = e as Record<string, unknown>;
  if (o.concat) return (o.concat as unknown[]).map(elementText).join(" . ");
  if (o.prefix) {
    const p = o.prefix as { addr: string; len: number };
    return p.len === 32 ? p.addr : `${p.addr}/${p.len}`;
  }
  if (o.range) return (o.range as unknown[]).map(elementText).join("-");
  if (o.elem) return elementText((o.elem as Record<string, unknown>).val);
  return JSON.stringify(e);
}

export function parseNftTable(stdout: string): NftObservation {
  const doc = parseJson("nft -j list table", stdout, NftJson);
  const obs: NftObservation = { exists: true, elements: { allow_tcp: [], allow_udp: [], allow_all_tcp: [], allow_all_udp: [] } };
  for (const item of doc.nftables) {
    const set = item.set as { name: string; elem?: unknown[] } | undefined;
    if (set && (STATIC_SETS as readonly string[]).includes(set.name)) {
      obs.elements[set.name as StaticSet] = (set.elem ?? []).map(elementText).sort();
    }
    const rule = item.rule as { comment?: string } | undefined;
    if (rule?.comment?.startsWith(MARK)) obs.structure = rule.comment.slice(MARK.length);
  }
  return obs;
}

const noTable = (): NftObservation => ({ exists: false, elements: { allow_tcp: [], allow_udp: [], allow_all_tcp: [], allow_all_udp: [] } });

/**
 * The table `inet netfleet` as nft lists it (one read, shared by the
 * nft-table resource and the owned cleanup). Without nft installed there is
 * no table of ours: we would have made it with nft.
 */
export async function observeNftTable(ctx: ObserveContext, options: { nftMayBeMissing?: boolean } = {}): Promise<NftObservation> {
  let out;
  try {
    out = await ctx.read(["nft", "-j", "list", "table", "inet", "netfleet"], { allowFailure: true });
  } catch (err) {
    if (options.nftMayBeMissing && err instanceof ExecError && err.exitCode === 127 && /\bENOENT\b/.test(err.stderr)) return noTable();
    throw err;
  }
  if (out.exitCode !== 0) {
    if (/No such file or directory/.test(out.stderr)) return noTable();
    throw new Error(`nft -j list table inet netfleet exited ${out.exitCode}: ${out.stderr.trim()}`);
  }
  return parseNftTable(out.stdout);
}

export const nftTable: ResourceHandler<NftTableSpec, NftObservation> = {
  kind: "nft-table",
  observe(_spec, ctx) {
    return observeNftTable(ctx);
  },
  plan(spec, obs): ResourcePlan {
    const { text, hash } = nftRuleset(spec);
    const want = desiredElements(spec);
    if (!obs.exists || obs.structure !== hash) {
      return {
        changes: { structure: { old: obs.exists ? (obs.structure ?? "unmarked") : null, new: hash } },
        commands: [mutate(["nft", "-f", "-"], text)],
      };
    }
    const changes: Changes = {};
    const lines: string[] = [];
    for (const set of STATIC_SETS) {
      const have = new Set(obs.elements[set]);
      const wanted = new Set(want[set]);
      const del = [...have].filter((e) => !wanted.has(e));
      const add = [...wanted].filter((e) => !have.has(e));
      if (!del.length && !add.length) continue;
      changes[set] = { old: [...have], new: [...wanted] };
      if (del.length) lines.push(`delete element inet netfleet ${set} { ${del.join(", ")} }`);
      if (add.length) lines.push(`add element inet netfleet ${set} { ${add.join(", ")} }`);
    }
    if (!lines.length) return { changes: {}, commands: [] };
    // Only the allow lists changed: edit the sets in one transaction, rules untouched.
    return { changes, commands: [mutate(["nft", "-f", "-"], lines.join("\n") + "\n")] };
  },
};
