import { distance } from "fastest-levenshtein";
import type { z } from "zod";
import { quoteToken, type InputProblem } from "../errors.ts";
import type { SourceFile, DocPath } from "./source.ts";
import { GroupSpec, HostSpec, InventoryFile, NetworkSpec, PortForward, PortRangeForward, PortSet, SiteSettings, UplinkSpec, VmSpec } from "./schema.ts";
import { mirrorKeysFor } from "./schema-mirrors.ts";
import { profileKeysFor } from "./schema-profiles.ts";

/**
 * Schema problems of one inventory file as `file:line:col: path: message`,
 * with a "did you mean" for a misspelt key (edit distance or a synonym from
 * another tool's vocabulary).
 */

/** Each zod issue of a file's schema check as a problem at its key or value, with a "did you mean" for an unknown key. */
export function zodProblems(file: SourceFile, base: DocPath, error: z.ZodError): InputProblem[] {
  const out: InputProblem[] = [];
  for (const issue of flattenUnions(error.issues)) {
    const path = [...base, ...(issue.path as (string | number)[])];
    if (issue.code === "unrecognized_keys") {
      for (const key of issue.keys) {
        const hint = key === "<<" ? "YAML merge keys are not supported; share settings through groups" : `unknown key ${quoteToken(key)}${suggest(key, path)}`;
        out.push(file.problem([...path, key], hint, { key: true }));
      }
    } else if (issue.code === "invalid_type" && /received undefined$/.test(issue.message)) {
      out.push(file.problem(path, `required key is missing (expected ${issue.expected})`, { key: true }));
    } else if (issue.code === "invalid_key") {
      out.push(file.problem(path, `invalid name: ${issue.issues[0]?.message ?? issue.message}`, { key: true }));
    } else {
      out.push(file.problem(path, issue.message.replace(/^Invalid input: /, "")));
    }
  }
  return out;
}

/**
 * A value that fits no branch of a union (`dhcp: { ... } | false`) gets the
 * issues of the branch of its own type (an object's unknown or bad keys),
 * not "invalid input".
 */
function flattenUnions(issues: z.core.$ZodIssue[]): z.core.$ZodIssue[] {
  return issues.flatMap((issue) => {
    if (issue.code !== "invalid_union" || issue.errors.length === 0) return [issue];
    const sameType = issue.errors.filter((branch) => !branch.some((i) => i.code === "invalid_type" && i.path.length === 0 || i.code === "invalid_value" && i.path.length === 0));
    if (sameType.length === 0) {
      const words: Record<string, string> = { object: "a mapping", array: "a list" };
      const expected = issue.errors.flatMap((branch) =>
        branch.flatMap((i) => (i.code === "invalid_type" ? [words[i.expected] ?? `a ${i.expected}`] : i.code === "invalid_value" ? i.values.map((v) => (typeof v === "string" ? quoteToken(v) : JSON.stringify(v))) : [])),
      );
      return [{ ...issue, message: `expected ${[...new Set(expected)].join(" or ")}` }];
    }
    if (sameType.length !== 1) return [issue];
    return flattenUnions(sameType[0]!.map((i) => ({ ...i, path: [...issue.path, ...i.path] })));
  });
}

/**
 * Names other tools give our keys (Neutron's allowed address pairs, keepalived's
 * virtual IPs), suggested when someone writes them here.
 */
const SYNONYMS: Record<string, string> = {
  extra_ips: "extra_addresses",
  virtual_ips: "extra_addresses",
  allowed_address_pairs: "extra_addresses",
  groups: "cluster_groups",
  external_interface_list: "external_interfaces",
  forwards: "port_forwards",
  port_forward: "port_forwards",
  services: "gateway_services",
  deny: "egress_deny",
  max_ttl: "dns_max_ttl",
  dns_set_timeout: "name_set_timeout",
};

/** "did you mean" for a misspelt key, from the keys its siblings may have: a synonym, else the nearest by Levenshtein distance (at most 2). */
function suggest(key: string, path: DocPath): string {
  const known = knownKeysFor(path);
  const synonym = SYNONYMS[key];
  if (synonym !== undefined && known.includes(synonym)) return ` (did you mean ${quoteToken(synonym)}?)`;
  let best: string | undefined;
  let bestDistance = 3;
  for (const k of known) {
    if (Math.abs(key.length - k.length) >= bestDistance) continue; // the distance is at least the length difference
    const d = distance(key, k);
    if (d < bestDistance) {
      best = k;
      bestDistance = d;
    }
  }
  return best ? ` (did you mean ${quoteToken(best)}?)` : "";
}

function knownKeysFor(path: DocPath): string[] {
  const top = path[0];
  if (path.length === 0) return Object.keys(InventoryFile.shape);
  if (top === "site") return Object.keys(SiteSettings.shape);
  if (top === "mirrors") return mirrorKeysFor(path);
  if (top === "profiles") return profileKeysFor(path);
  if (top === "networks") {
    if (path.length === 2) return Object.keys(NetworkSpec.shape);
    if (path[2] === "dhcp") return ["start", "end", "lease_time"];
    if (path[2] === "vms" && path.length === 4) return Object.keys(VmSpec.shape);
    if (path[2] === "vms" && path[4] === "allow") return ["to", "name", "ports", "proto"];
    if (path[2] === "vms" && path.length >= 5 && (path[4] === "bandwidth" || path[4] === "gateway_services")) return profileKeysFor(["profiles", "", ...path.slice(4)]);
    if (path[2] === "vms" || path[2] === "cluster_groups") return [];
    if (path[2] === "port_forwards") return Object.keys(PortForward.shape);
    if (path[2] === "port_ranges") return Object.keys(PortRangeForward.shape);
    if (path[2] === "gateway_services") return Object.keys(PortSet.shape);
  }
  if (top === "groups" || top === "hosts") {
    if (path[2] === "uplink") return Object.keys(UplinkSpec.shape);
    if (path[2] === "reserved_ports") return Object.keys(PortSet.shape);
    return Object.keys(top === "hosts" ? HostSpec.shape : GroupSpec.shape);
  }
  return [];
}
