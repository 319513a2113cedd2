import { ParseError } from "@netfleet/shared";
import { z } from "zod";
import { mutate, type Command } from "../exec/runner.ts";

/**
 * The forwarding database of a VXLAN device as netfleet keeps it (bridge(8)
 * `fdb`): one permanent all-zeros entry per remote (the flood list), one
 * permanent unicast entry per MAC of the inventory held by another host,
 * and nothing learned. Pure: parsing real `bridge -json fdb show dev NAME`
 * output (iproute2 6.1: `mac`, `dst`, `state` "permanent" for entries added
 * by hand, "" for learned ones) and the commands that converge it.
 */

/** The all-zeros MAC of the flood entries (bridge(8): "00:00:00:00:00:00" is the default destination). */
export const FLOOD_MAC = "00:00:00:00:00:00";

/** One unicast entry of a device's forwarding database: a MAC and the remote it goes to. */
export interface FdbEntry {
  mac: string;
  dst: string;
}

/** A device's forwarding database, sorted: flood list by address, unicast entries by MAC. */
export interface FdbView {
  /** `dst` of each permanent all-zeros entry. */
  flood: string[];
  /** Permanent unicast entries (ours: only netfleet adds entries by hand). */
  statics: FdbEntry[];
  /** Entries the device learned from received frames (state not permanent). */
  learned: FdbEntry[];
}

const FdbRow = z.looseObject({ mac: z.string(), dst: z.string().optional(), state: z.string().optional() });

/**
 * Reads `bridge -json fdb show dev NAME` output. Entries without a `dst`
 * (the device's own address, multicast group entries) are left out.
 * @throws ParseError on output that is not that JSON.
 */
export function parseFdb(stdout: string): FdbView {
  let raw: unknown;
  try {
    raw = JSON.parse(stdout || "[]");
  } catch {
    throw new ParseError("bridge -json fdb show", "not JSON");
  }
  const list = z.array(FdbRow).safeParse(raw);
  if (!list.success) throw new ParseError("bridge -json fdb show", `${list.error.issues[0]?.path.join(".")}: ${list.error.issues[0]?.message}`);
  const rows = list.data.filter((e): e is typeof e & { dst: string } => e.dst !== undefined);
  const permanent = rows.filter((e) => e.state === "permanent");
  const entry = (e: { mac: string; dst: string }): FdbEntry => ({ mac: e.mac, dst: e.dst });
  return {
    flood: permanent.filter((e) => e.mac === FLOOD_MAC).map((e) => e.dst).sort(byAddress),
    statics: permanent.filter((e) => e.mac !== FLOOD_MAC).map(entry).sort(byMac),
    learned: rows.filter((e) => e.state !== "permanent" && e.mac !== FLOOD_MAC).map(entry).sort(byMac),
  };
}

/** The flood list alone (see parseFdb). @throws ParseError as parseFdb. */
export function parseFloodList(stdout: string): string[] {
  return parseFdb(stdout).flood;
}

/** IPv4 addresses in numeric order. */
export function byAddress(a: string, b: string): number {
  const n = (s: string) => s.split(".").reduce((v, o) => v * 256 + Number(o), 0);
  return n(a) - n(b);
}

function byMac(a: FdbEntry, b: FdbEntry): number {
  return a.mac.localeCompare(b.mac) || byAddress(a.dst, b.dst);
}

/** bridge(8) argv (iproute2), the tool of the forwarding database. */
export function bridgeTool(...args: string[]): string[] {
  return ["bridge", ...args];
}

/** Flood entries to delete (not a remote any more) and to append (a new remote). */
export function floodCommands(device: string, remotes: readonly string[], have: readonly string[]): Command[] {
  const want = [...remotes].sort(byAddress);
  return [
    ...have.filter((d) => !want.includes(d)).map((d) => mutate(bridgeTool("fdb", "del", FLOOD_MAC, "dev", device, "dst", d))),
    ...want.filter((d) => !have.includes(d)).map((d) => mutate(bridgeTool("fdb", "append", FLOOD_MAC, "dev", device, "dst", d))),
  ];
}

/** The desired static entries, sorted (one per MAC, MACs lower case as bridge prints them). */
export function wantStatics(macs: readonly FdbEntry[] | undefined): FdbEntry[] {
  return (macs ?? []).map((e) => ({ mac: e.mac.toLowerCase(), dst: e.dst })).sort(byMac);
}

/**
 * Commands that make the unicast entries exactly `want`: learned entries
 * and static entries of a MAC not wanted are deleted (`fdb del MAC dev D
 * dst ADDR`), a wanted MAC missing or pointing elsewhere is set with `fdb
 * replace` (which makes it permanent, or moves it, in one step).
 */
export function unicastCommands(device: string, want: readonly FdbEntry[], have: Pick<FdbView, "statics" | "learned">): Command[] {
  const key = (e: FdbEntry) => `${e.mac} ${e.dst}`;
  const wantedMac = new Set(want.map((e) => e.mac));
  const staticKeys = new Set(have.statics.map(key));
  const del = (e: FdbEntry) => mutate(bridgeTool("fdb", "del", e.mac, "dev", device, "dst", e.dst));
  return [
    ...have.learned.map(del),
    ...have.statics.filter((e) => !wantedMac.has(e.mac)).map(del),
    ...want.filter((e) => !staticKeys.has(key(e))).map((e) => mutate(bridgeTool("fdb", "replace", e.mac, "dev", device, "dst", e.dst))),
  ];
}
