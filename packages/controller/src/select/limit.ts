import picomatch from "picomatch";

/**
 * What `--limit` can select a host by: its name, groups, role and labels
 * (the inventory's `Host`; an enrolled host the inventory does not list has
 * only a name).
 */
export interface Selectable {
  name: string;
  groups?: readonly string[];
  role?: string;
  labels?: Readonly<Record<string, string>>;
}

/**
 * One term of a `--limit`: `or` (a plain pattern, union), `and` (`&pattern`, intersection),
 * `not` (`!pattern`, exclusion); a label selector (`key=glob`) or a glob over the host's
 * name, groups and role. `text` is the term as written, operator included.
 */
export interface LimitTerm {
  op: "or" | "and" | "not";
  text: string;
  label?: { key: string; value: string };
  pattern?: string;
}

/** A `--limit` that cannot be read, or that selects nothing; the message starts with `--limit`. */
export class LimitError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "LimitError";
  }
}

/** Label keys as the inventory allows them (schema-host.ts). */
const LABEL_KEY = /^[a-z0-9][a-z0-9_.-]{0,62}$/;

/**
 * The terms of a `--limit` text (or of several, each split the same way).
 * Terms are separated by `,` or `:` (Ansible's two separators: `a:b`, `a,b`);
 * a term is `[&|!]PATTERN`, PATTERN a label selector `key=value` (value a glob)
 * or a glob over host name, group and role. Globs: `*` any run of characters,
 * `?` one; every other character is literal (no brackets, braces, extglobs,
 * `~regex` or `[0:2]` ranges: an inventory name is a DNS label and cannot hold them).
 * @throws LimitError naming the term: an operator with no pattern, two operators,
 *   an empty key or value, a key that is no label key.
 */
export function parseLimit(limit: string | readonly string[]): LimitTerm[] {
  const texts = typeof limit === "string" ? [limit] : limit;
  const terms: LimitTerm[] = [];
  for (const raw of texts.flatMap((t) => t.split(/[,:]/)).map((t) => t.trim())) {
    if (raw === "") continue;
    const op = raw[0] === "&" ? "and" : raw[0] === "!" ? "not" : "or";
    const body = op === "or" ? raw : raw.slice(1).trim();
    if (body === "") throw new LimitError(`--limit ${JSON.stringify(raw)}: "${raw[0]}" needs a pattern after it (e.g. ${raw[0]}rack-b)`);
    if (body[0] === "&" || body[0] === "!") throw new LimitError(`--limit ${JSON.stringify(raw)}: one operator per term: & (and) or ! (not)`);
    const eq = body.indexOf("=");
    if (eq < 0) {
      terms.push({ op, text: raw, pattern: body });
      continue;
    }
    const key = body.slice(0, eq).trim();
    const value = body.slice(eq + 1).trim();
    if (!LABEL_KEY.test(key)) throw new LimitError(`--limit ${JSON.stringify(raw)}: ${JSON.stringify(key)} is not a label key (1-63 of a-z 0-9 _ . -, starting with a letter or digit)`);
    if (value === "") throw new LimitError(`--limit ${JSON.stringify(raw)}: give the label's value (${key}=VALUE; * matches any)`);
    terms.push({ op, text: raw, label: { key, value } });
  }
  if (terms.length === 0) throw new LimitError("--limit is empty: give host, group, role or label patterns (e.g. hv*, rack=a)");
  return terms;
}

/** A glob of ours: only `*` and `?` special; a leading `!` or brackets are literal (parseLimit took the operators). */
function glob(pattern: string): (text: string) => boolean {
  return picomatch(pattern, { nonegate: true, nobrace: true, nobracket: true, noextglob: true, dot: true });
}

/** Whether `host` matches the term's pattern (its operator aside). */
function termMatcher(term: LimitTerm): (host: Selectable) => boolean {
  if (term.label) {
    const { key } = term.label;
    const value = glob(term.label.value);
    return (h) => h.labels !== undefined && Object.hasOwn(h.labels, key) && value(h.labels[key]!);
  }
  const m = glob(term.pattern!);
  return (h) => m(h.name) || (h.groups ?? []).some((g) => m(g)) || (h.role !== undefined && m(h.role));
}

/**
 * The hosts `limit` selects, by Ansible's rules (InventoryManager's order_patterns:
 * union first, then intersections, then exclusions, whatever their order in the text):
 * the hosts matching any plain term (every host when there is none, so `!hv1` is all
 * but hv1), kept when they match every `&` term, dropped when they match any `!` term.
 * `unmatched` lists the terms (as written) that match no host of `hosts` at all, which
 * callers report as an error: a typo must not quietly shrink or widen a rollout.
 * @throws LimitError from parseLimit.
 */
export function selectHosts(hosts: readonly Selectable[], limit: string | readonly string[]): { hosts: Set<string>; unmatched: string[] } {
  const terms = parseLimit(limit);
  const unmatched: string[] = [];
  const matchers = terms.map((t) => {
    const m = termMatcher(t);
    if (!hosts.some(m)) unmatched.push(t.text);
    return { op: t.op, m };
  });
  const ors = matchers.filter((t) => t.op === "or");
  const selected = hosts.filter(
    (h) =>
      (ors.length === 0 || ors.some((t) => t.m(h))) &&
      matchers.every((t) => t.op !== "and" || t.m(h)) &&
      !matchers.some((t) => t.op === "not" && t.m(h)),
  );
  return { hosts: new Set(selected.map((h) => h.name)), unmatched };
}

/**
 * The host names `limit` selects out of `hosts`, for a command that refuses a
 * limit which does not fit (`site`: the site's name, for the message).
 * @throws LimitError "--limit db*, rack=z: match no host, group, role or label of site lab",
 *   "--limit hv*:&backend selects no host of site lab", or parseLimit's.
 */
export function selectLimit(hosts: readonly Selectable[], limit: string | readonly string[], site?: string): Set<string> {
  const { hosts: selected, unmatched } = selectHosts(hosts, limit);
  const of = site ? ` of site ${site}` : "";
  if (unmatched.length > 0) throw new LimitError(`--limit ${unmatched.join(", ")}: ${unmatched.length === 1 ? "matches" : "match"} no host, group, role or label${of}`);
  if (selected.size === 0) throw new LimitError(`--limit ${typeof limit === "string" ? limit : limit.join(",")} selects no host${of}`);
  return selected;
}
