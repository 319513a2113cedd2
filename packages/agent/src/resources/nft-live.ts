import { z } from "zod";
import { parseJson } from "./tool-json.ts";
import { STATIC_SETS, MARK, cidrSet, type CarriedElement, type StaticSet } from "./nft-rules.ts";

/**
 * Reading the live table `inet netfleet` (nft 1.0.6 `list table` text and
 * `-j` JSON) and the external interfaces' addresses (`ip -j addr show dev`).
 */

/**
 * A table listing (or our generated text, which is written in listing
 * form) reduced to what must not drift, one line per statement, each
 * prefixed by its block (`chain forward: iifname "gw-a" jump out_a`):
 * - set elements left out (compared separately: static sets as sets,
 *   name sets not at all — dnsmasq and `update` fill them);
 * - counter values left out (`counter packets 3 bytes 180` → `counter`);
 * - the members of anonymous sets and maps inside a rule sorted (nft
 *   prints a hashed anonymous set in its hash order, which changes each
 *   time the table is made).
 * Block headers are lines too (`chain forward: {`), so a deleted empty
 * chain or set shows.
 */
export function normaliseListing(text: string): string[] {
  const out: string[] = [];
  let blockName: string | undefined;
  let inElements = false;
  for (const raw of text.split("\n")) {
    let line = raw.trim();
    if (inElements) {
      if (line.endsWith("}")) inElements = false;
      continue;
    }
    if (!line || line.startsWith("#")) continue;
    if (/^table \S+ \S+ \{$/.test(line)) continue;
    const head = /^((?:set|map|chain|flowtable) \S+) \{$/.exec(line);
    if (head) {
      blockName = head[1]!;
      out.push(`${blockName}: {`);
      continue;
    }
    if (line === "}") {
      blockName = undefined;
      continue;
    }
    if (line.startsWith("elements = {")) {
      if (!line.endsWith("}")) inElements = true;
      continue;
    }
    line = line.replace(/ # handle \d+$/, "");
    line = line.replace(/\bcounter packets \d+ bytes \d+/g, "counter");
    line = line.replace(/\{ ([^{}]*) \}/g, (_m, inner: string) => `{ ${inner.split(", ").sort().join(", ")} }`);
    out.push(`${blockName ?? "table"}: ${line}`);
  }
  return out;
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

/** What `nft -j list table inet netfleet` tells: the mark, static set elements, and every other set's elements with their expiry. */
export interface NftJsonView {
  structure?: string;
  elements: Record<StaticSet, string[]>;
  /** Elements of the other sets (the name sets), with seconds until they expire (0: no timeout). */
  dynamic: Record<string, CarriedElement[]>;
}

/** The static sets, each empty. */
export const emptyElements = (): Record<StaticSet, string[]> => ({ allow_tcp: [], allow_udp: [], allow_all_tcp: [], allow_all_udp: [] });

/**
 * Parses `nft -j list table inet netfleet`, or our table's part of `nft -j
 * list ruleset` (`only`: the objects of that table) (nft 1.0.6 JSON schema
 * 1). Throws ParseError on a document of another shape.
 */
export function parseNftJson(stdout: string, only?: { family: string; table: string }): NftJsonView {
  return parseNftRuleset(stdout, only).view;
}

/**
 * parseNftJson, and whether the listing holds the table itself (`only`'s;
 * without `only`, any table): prune learns from one `nft -j list ruleset`
 * whether `inet netfleet` exists.
 */
export function parseNftRuleset(stdout: string, only?: { family: string; table: string }): { present: boolean; view: NftJsonView } {
  const doc = parseJson(only ? "nft -j list ruleset" : "nft -j list table", stdout, NftJson);
  const view: NftJsonView = { elements: emptyElements(), dynamic: {} };
  let present = false;
  for (const item of doc.nftables) {
    const table = item.table as { family?: string; name?: string } | undefined;
    if (table && (!only || (table.family === only.family && table.name === only.table))) present = true;
    if (only) {
      const o = (item.set ?? item.rule ?? item.map) as { family?: string; table?: string } | undefined;
      if (o?.family !== only.family || o?.table !== only.table) continue;
    }
    const set = item.set as { name: string; elem?: unknown[] } | undefined;
    if (set && (STATIC_SETS as readonly string[]).includes(set.name)) {
      view.elements[set.name as StaticSet] = (set.elem ?? []).map(elementText).sort();
    } else if (set) {
      view.dynamic[set.name] = (set.elem ?? []).map((e) => {
        const inner = (e as { elem?: { val: unknown; expires?: number } }).elem;
        return inner ? { val: elementText(inner.val), expires: inner.expires ?? 0 } : { val: elementText(e), expires: 0 };
      });
    }
    const rule = item.rule as { comment?: string } | undefined;
    if (rule?.comment?.startsWith(MARK)) view.structure = rule.comment.slice(MARK.length);
  }
  return { present, view };
}

const IpAddr = z.array(
  z.object({
    ifname: z.string().optional(),
    addr_info: z.array(z.object({ family: z.string(), local: z.string().optional(), prefixlen: z.number().optional() })).optional(),
  }),
);

/**
 * The IPv4 subnets (network form, `a.b.c.d/len`) of the addresses in
 * `ip -j addr show dev X` output; host routes (/32) are the address itself.
 */
export function parseExternalSubnets(stdout: string): string[] {
  const links = parseJson("ip -j addr show", stdout, IpAddr);
  const out: string[] = [];
  for (const l of links) {
    for (const a of l.addr_info ?? []) {
      if (a.family !== "inet" || !a.local || a.prefixlen === undefined) continue;
      const n = a.local.split(".").reduce((x, o) => ((x << 8) + Number(o)) >>> 0, 0);
      const mask = a.prefixlen === 0 ? 0 : (0xffffffff << (32 - a.prefixlen)) >>> 0;
      const net = (n & mask) >>> 0;
      out.push(`${[net >>> 24, (net >>> 16) & 255, (net >>> 8) & 255, net & 255].join(".")}/${a.prefixlen}`);
    }
  }
  return cidrSet(out);
}
