import { unifiedDiff, type NftTableSpec } from "@netfleet/shared";
import { ExecError, mutate } from "../exec/runner.ts";
import { foreignDrops } from "./nft-foreign.ts";
import { emptyElements, normaliseListing, parseExternalSubnets, parseNftJson, parseNftRuleset } from "./nft-live.ts";
import { STATIC_SETS, desiredElements as nftDesiredElements, nftRuleset, nftStructure, type CarriedElement, type StaticSet } from "./nft-rules.ts";
import { ownerMarker, type Changes, type ObserveContext, type ResourceHandler, type ResourcePlan } from "./types.ts";

export { STATIC_SETS, desiredElements, nftRuleset, nftStructure, nftStructureTemplate, auditPrefix, forwardTargets } from "./nft-rules.ts";
export { normaliseListing, parseExternalSubnets } from "./nft-live.ts";
export { foreignDrops, FOREIGN_DROP } from "./nft-foreign.ts";

/**
 * The firewall resource: the table `inet netfleet`, compared whole.
 *
 * Drift: the live table is listed (`nft -t list table`, text) and reduced by
 * normaliseListing; the desired table is generated in that very listing
 * form (nft-rules.ts), so any edit by hand — an inserted or deleted rule, a
 * flushed chain, a changed set declaration or chain policy — is a differing
 * line and replans the whole table (one atomic `nft -f`, name-set elements
 * carried over with their remaining time). Static allow-set elements are
 * compared as sets (`nft -j list ruleset`) and edited in place. Counters and
 * name-set elements are not compared. The hash in the mark comment is only
 * the ownership marker prune looks for; it is compared as one more line.
 *
 * Notes (ResourcePlan.comment, never blocking; joined with "; "):
 * `foreign-drop: table <family> <name> chain <chain> (hook <hook>, priority <n>, policy drop)`,
 * `foreign-drop: table <family> <name> chain <chain> ([from <base>, ]hook <hook>, priority <n>): rule handle <h> drops|rejects`,
 * `warning: external interface <ifname> does not exist (its subnet is not in the deny lists)`.
 */
export interface NftObservation {
  exists: boolean;
  /** The structure hash in our mark comment; absent on a table without it (not ours). */
  structure?: string;
  elements: Record<StaticSet, string[]>;
  /** The live listing, normalised (normaliseListing); empty when there is no table. */
  lines: string[];
  /** Live elements of every set but the static ones (the name sets), with seconds to expiry. */
  dynamic: Record<string, CarriedElement[]>;
  /** IPv4 subnets of the external interfaces, read live (`ip -j addr show dev X`). */
  externalSubnets: string[];
  /** External interfaces that do not exist (nothing to read). */
  missingExternal: string[];
  /** Notes on foreign tables that may drop our traffic (nft-foreign.ts). */
  foreign: string[];
}

/** Reads `nft -j list table inet netfleet` output: exists, mark, elements (the shape prune and tests use). Throws ParseError on other JSON. */
export function parseNftTable(stdout: string): NftObservation {
  const v = parseNftJson(stdout);
  return { exists: true, ...v, lines: [], externalSubnets: [], missingExternal: [], foreign: [] };
}

const noTable = (): NftObservation => ({ exists: false, elements: emptyElements(), lines: [], dynamic: {}, externalSubnets: [], missingExternal: [], foreign: [] });

const missing = (stderr: string) => /No such file or directory/.test(stderr);

/** Our table, as nft names it. */
const OUR_TABLE = { family: "inet", table: "netfleet" } as const;

/**
 * The table `inet netfleet` as `nft -j list ruleset` shows it: one read a
 * pass, shared (the same argv, so the pass's memo) by the nft-table
 * resource, prune and the VXLAN filters' prune. Without nft installed there
 * is no table of ours: we would have made it with nft.
 */
export async function observeNftTable(ctx: ObserveContext, options: { nftMayBeMissing?: boolean } = {}): Promise<NftObservation> {
  let out;
  try {
    out = await ctx.read(["nft", "-j", "list", "ruleset"], { allowFailure: true });
  } catch (err) {
    if (options.nftMayBeMissing && err instanceof ExecError && err.exitCode === 127 && /\bENOENT\b/.test(err.stderr)) return noTable();
    throw err;
  }
  if (out.exitCode !== 0) throw new Error(`nft -j list ruleset exited ${out.exitCode}: ${out.stderr.trim()}`);
  const { present, view } = parseNftRuleset(out.stdout, OUR_TABLE);
  return present ? { ...noTable(), exists: true, ...view } : noTable();
}

/**
 * Two reads a pass: `nft -t list table inet netfleet` (text, terse: no set
 * elements, the drift comparison) and `nft -j list ruleset` (the static
 * and name-set elements of our table, and the foreign tables), plus `ip -j
 * addr show dev X` per external interface.
 */
async function observeFull(spec: NftTableSpec, ctx: ObserveContext): Promise<NftObservation> {
  const [text, ruleset, ...addrs] = await Promise.all([
    ctx.read(["nft", "-t", "list", "table", "inet", "netfleet"], { allowFailure: true }),
    ctx.read(["nft", "-j", "list", "ruleset"], { allowFailure: true }),
    ...spec.externalInterfaces.map((ext) => ctx.read(["ip", "-j", "addr", "show", "dev", ext], { allowFailure: true })),
  ]);
  const obs = noTable();
  if (text.exitCode === 0) {
    obs.exists = true;
    obs.lines = normaliseListing(text.stdout);
  } else if (!missing(text.stderr)) {
    throw new Error(`nft -t list table inet netfleet exited ${text.exitCode}: ${text.stderr.trim()}`);
  }
  if (ruleset.exitCode === 0) {
    if (obs.exists) Object.assign(obs, parseNftJson(ruleset.stdout, OUR_TABLE));
    obs.foreign = foreignDrops(ruleset.stdout, spec.networks.map((n) => n.interface), undefined, ownerMarker(ctx.owner));
  } else if (!missing(ruleset.stderr)) {
    throw new Error(`nft -j list ruleset exited ${ruleset.exitCode}: ${ruleset.stderr.trim()}`);
  }
  const subnets: string[] = [];
  spec.externalInterfaces.forEach((ext, i) => {
    const r = addrs[i]!;
    if (r.exitCode !== 0) obs.missingExternal.push(ext);
    else subnets.push(...parseExternalSubnets(r.stdout));
  });
  obs.externalSubnets = [...new Set(subnets)].sort();
  return obs;
}

/**
 * What differs between two normalised listings, block by block: the lines
 * only one side has, or, when a block holds the same lines in another
 * order, that block's lines on both sides.
 */
export function listingDiff(live: readonly string[], want: readonly string[]): { old: string[]; new: string[] } {
  const blockOf = (l: string) => l.slice(0, l.indexOf(": "));
  const group = (ls: readonly string[]) => {
    const m = new Map<string, string[]>();
    for (const l of ls) m.set(blockOf(l), [...(m.get(blockOf(l)) ?? []), l]);
    return m;
  };
  const a = group(live);
  const b = group(want);
  const out = { old: [] as string[], new: [] as string[] };
  for (const block of new Set([...a.keys(), ...b.keys()])) {
    const x = a.get(block) ?? [];
    const y = b.get(block) ?? [];
    if (JSON.stringify(x) === JSON.stringify(y)) continue;
    const onlyX = x.filter((l) => !y.includes(l));
    const onlyY = y.filter((l) => !x.includes(l));
    if (onlyX.length || onlyY.length) {
      out.old.push(...onlyX);
      out.new.push(...onlyY);
    } else {
      out.old.push(...x);
      out.new.push(...y);
    }
  }
  return out;
}

/**
 * Normalised listing lines (normaliseListing) back in the form `nft list
 * table` prints: `table inet netfleet {`, each block indented with its
 * statements, `}`. Both sides of a diff go through it, so the diff shows
 * only what normaliseListing compares (no counter values, no handles,
 * anonymous sets in one order; set elements are compared apart).
 */
export function listingText(lines: readonly string[]): string {
  if (lines.length === 0) return "";
  const out = ["table inet netfleet {"];
  let open: string | undefined;
  for (const l of lines) {
    const at = l.indexOf(": ");
    const block = l.slice(0, at);
    const rest = l.slice(at + 2);
    if (block !== open && open !== undefined && open !== "table") out.push("\t}");
    if (rest === "{" && block !== "table") {
      out.push(`\t${block} {`);
      open = block;
      continue;
    }
    open = block;
    out.push(block === "table" ? `\t${rest}` : `\t\t${rest}`);
  }
  if (open !== undefined && open !== "table") out.push("\t}");
  out.push("}");
  return out.join("\n") + "\n";
}

/** The labels of the nft ruleset's diff. */
const NFT_DIFF = { before: "live: nft list table inet netfleet", after: "desired: table inet netfleet" };

/** The static sets' elements as lines `set <name>: <element>`, for the elements' diff. */
function elementLines(elements: Record<StaticSet, readonly string[]>): string {
  return STATIC_SETS.flatMap((set) => [...elements[set]].sort().map((e) => `set ${set}: ${e}\n`)).join("");
}

function notes(obs: NftObservation): string | undefined {
  const n = [...obs.foreign];
  for (const ext of obs.missingExternal) n.push(`warning: external interface ${ext} does not exist (its subnet is not in the deny lists)`);
  return n.length ? n.join("; ") : undefined;
}

/** The table `inet netfleet` as one resource (see NftObservation for how drift is found). */
export const nftTable: ResourceHandler<NftTableSpec, NftObservation> = {
  kind: "nft-table",
  observe(spec, ctx) {
    return observeFull(spec, ctx);
  },
  // No table, no foreign ruleset, the external interfaces present without an address yet.
  absent: noTable,
  plan(spec, obs): ResourcePlan {
    const live = { externalSubnets: obs.externalSubnets };
    const { text: structure, hash } = nftStructure(spec, live);
    const want = normaliseListing(structure);
    const comment = notes(obs);
    const withComment = (p: ResourcePlan): ResourcePlan => (comment ? { ...p, comment } : p);
    const carried = Object.fromEntries(spec.dnsSets.map((s) => [s, obs.dynamic[s] ?? []]));
    const replace = () => mutate(["nft", "-f", "-"], nftRuleset(spec, live, carried).text);
    const wanted = nftDesiredElements(spec);
    const setsDiff = unifiedDiff(elementLines(obs.elements), elementLines(wanted), { before: "live: static set elements", after: "desired: static set elements" });
    if (!obs.exists) {
      const diff = unifiedDiff(undefined, listingText(want), NFT_DIFF) + setsDiff;
      return withComment({ changes: { table: { old: null, new: `inet netfleet (${want.length} lines, mark structure=${hash})` } }, commands: [replace()], diff });
    }
    if (JSON.stringify(obs.lines) !== JSON.stringify(want)) {
      const d = listingDiff(obs.lines, want);
      const diff = unifiedDiff(listingText(obs.lines), listingText(want), NFT_DIFF) + setsDiff;
      return withComment({ changes: { ruleset: { old: d.old, new: d.new }, ...setChanges(obs.elements, wanted) }, commands: [replace()], diff });
    }
    const changes: Changes = {};
    const lines: string[] = [];
    for (const set of STATIC_SETS) {
      const have = new Set(obs.elements[set]);
      const del = [...have].filter((e) => !wanted[set].includes(e));
      const add = wanted[set].filter((e) => !have.has(e));
      if (!del.length && !add.length) continue;
      changes[set] = { old: [...have], new: wanted[set] };
      if (del.length) lines.push(`delete element inet netfleet ${set} { ${del.join(", ")} }`);
      if (add.length) lines.push(`add element inet netfleet ${set} { ${add.join(", ")} }`);
    }
    if (!lines.length) return withComment({ changes: {}, commands: [] });
    // Only the allow lists changed: edit the sets in one transaction, rules untouched.
    return withComment({ changes, commands: [mutate(["nft", "-f", "-"], lines.join("\n") + "\n")], diff: setsDiff });
  },
  // Name-set elements (dnsmasq and `update` add them, they expire) are not the plan's; the rest is.
  stable: (obs) => ({ ...obs, dynamic: Object.keys(obs.dynamic).sort() }),
};

/** The static sets whose elements differ, as `{ old, new }` element lists. */
function setChanges(have: Record<StaticSet, string[]>, want: Record<StaticSet, string[]>): Changes {
  const out: Changes = {};
  for (const set of STATIC_SETS) {
    if (JSON.stringify([...have[set]].sort()) !== JSON.stringify([...want[set]].sort())) out[set] = { old: have[set], new: want[set] };
  }
  return out;
}

