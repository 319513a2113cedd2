/**
 * The inventory field reference (docs/inventory-reference.md): the JSON
 * Schema of one inventory file (`inventoryJsonSchema()`, what `netfleet
 * schema` prints, itself made from the zod schema `netfleet validate`
 * runs) rendered as markdown, one table row per key with its type, default,
 * allowed values and description, and the rules between keys in words. Made
 * only from the schema, so the page cannot drift from the code; a unit test
 * compares the committed page with this output.
 */
import { inventoryJsonSchema } from "./schema.ts";
import { LINK_LOCAL_PATTERN } from "./schema-patterns.ts";

/** The subset of JSON Schema (draft-07) that the inventory's schema uses. */
interface Schema {
  type?: string;
  description?: string;
  default?: unknown;
  const?: unknown;
  enum?: unknown[];
  pattern?: string;
  patternErrorMessage?: string;
  minimum?: number;
  maximum?: number;
  maxLength?: number;
  minItems?: number;
  maxItems?: number;
  uniqueItems?: boolean;
  properties?: Record<string, Schema | boolean>;
  required?: string[];
  additionalProperties?: Schema | boolean;
  propertyNames?: Schema;
  items?: Schema;
  allOf?: Schema[];
  anyOf?: Schema[];
  oneOf?: Schema[];
  not?: Schema;
  if?: Schema;
  then?: Schema;
  else?: Schema;
  $ref?: string;
  definitions?: Record<string, Schema>;
}

/** Patterns the rules refuse with `not`, in words (a regex says nothing to a reader). */
const PATTERN_WORDS = new Map([[LINK_LOCAL_PATTERN, "inside 169.254.0.0/16 (link-local)"]]);
/** Patterns longer than this are named, not shown: the JSON Schema (`netfleet schema`) has them. */
const PATTERN_SHOWN_MAX = 60;

/** One row of a section's table. */
interface Row {
  key: string;
  type: string;
  default: string;
  allowed: string;
  description: string;
}

/** A rule between keys of one object, in words, and the object it is on. */
interface Rule {
  at: string;
  text: string;
}

/**
 * The markdown page: a title and how to read it, then one section per
 * top-level key of an inventory file (site, networks, groups, hosts) with
 * a table of every key below it (`networks.<network>.vms.<vm>.allow[].to`:
 * `<...>` a name the operator chooses, `[]` each item of a list) and the
 * rules between its keys, then the rules across sections. Deterministic
 * (the schema's order); pure.
 */
export function inventoryReference(schema: Record<string, unknown> = inventoryJsonSchema()): string {
  const root = schema as Schema;
  const walk = new Walk(root.definitions ?? {});
  const out: string[] = [
    "<!-- Generated from the inventory's JSON Schema by `npm run docs` (netfleet schema --markdown). Do not edit: a unit test fails when it differs. -->",
    "",
    "# Inventory field reference",
    "",
    `${root.description ?? ""}.`,
    "",
    "Every key of an inventory file, made from the JSON Schema that `netfleet schema` prints (the one editors use through",
    "`# yaml-language-server: $schema=...`), which is itself made from the schema `netfleet validate` checks, so this page",
    "and the code cannot drift apart. In a key, `<network>`, `<vm>`, `<host>`, ... stand for a name you choose and `[]` for",
    "each item of a list. *required*: the key must be set. Rules across entries and files (overlapping addresses,",
    "references to hosts and VMs, names used twice) are checked by `netfleet validate` and are not listed here.",
    "",
  ];
  const sections = Object.entries(root.properties ?? {});
  out.push(...sections.map(([name]) => `- [${name}](#${name})`), "");
  for (const [name, s] of sections) {
    if (typeof s === "boolean") continue;
    const rows: Row[] = [];
    const rules: Rule[] = [];
    walk.field(name, s, false, rows, rules);
    out.push(`## ${name}`, "", `${walk.resolve(s).description ?? ""}.`, "");
    out.push("| key | type | default | allowed values | description |", "|---|---|---|---|---|");
    for (const r of rows) out.push(`| ${[`\`${r.key}\``, r.type, r.default, r.allowed, r.description].map(cell).join(" | ")} |`);
    out.push("");
    if (rules.length > 0) out.push("Rules between keys:", "", ...rules.map((r) => `- \`${r.at}\`: ${r.text}`), "");
  }
  const across = ruleTexts(root, "");
  if (across.length > 0) out.push("## Rules across sections", "", ...across.map((t) => `- ${t}`), "");
  return out.join("\n");
}

/** Walks the schema into rows and rules, resolving `$ref`s into `definitions`. */
class Walk {
  private readonly definitions: Record<string, Schema>;
  constructor(definitions: Record<string, Schema>) {
    this.definitions = definitions;
  }

  /** `s` with an `allOf: [{ $ref }]` (zod's way to reuse a definition) merged in; the field's own keywords win. */
  resolve(s: Schema): Schema {
    const refs = (s.allOf ?? []).filter((x) => x.$ref);
    if (refs.length === 0) return s;
    const merged: Schema = {};
    for (const r of refs) Object.assign(merged, this.definitions[r.$ref!.replace("#/definitions/", "")] ?? {});
    const rest = (s.allOf ?? []).filter((x) => !x.$ref);
    const own: Schema = { ...s };
    if (rest.length > 0) own.allOf = rest;
    else delete own.allOf;
    return { ...merged, ...own };
  }

  /** The row of key `key` (schema `raw`), then those of every key below it; its object rules into `rules`. */
  field(key: string, raw: Schema, required: boolean, rows: Row[], rules: Rule[]): void {
    const s = this.resolve(raw);
    const objects = this.objectsOf(s);
    const record = objects.find((o) => typeof o.additionalProperties === "object");
    rows.push({
      key,
      type: this.typeOf(s),
      default: required ? "*required*" : s.default !== undefined ? `\`${JSON.stringify(s.default)}\`` : "",
      allowed: this.allowedOf(s),
      description: s.description ?? "",
    });
    if (record) {
      const names = record.propertyNames ?? {};
      const child = `${key}.<${placeholder(key, names)}>`;
      const value = this.resolve(record.additionalProperties as Schema);
      rows.push({ key: `${child}`, type: this.typeOf(value), default: "", allowed: names.patternErrorMessage ?? "", description: [names.description, value.description].filter(Boolean).join(". ") });
      this.children(child, value, rows, rules);
      return;
    }
    for (const o of objects) this.children(key, o, rows, rules);
    if (s.type === "array" && s.items) {
      const item = this.resolve(s.items);
      for (const o of this.objectsOf(item)) this.children(`${key}[]`, o, rows, rules);
    }
  }

  /** The rows of the keys of object schema `o` at `key`, and its rules. */
  private children(key: string, o: Schema, rows: Row[], rules: Rule[]): void {
    for (const [name, c] of Object.entries(o.properties ?? {})) {
      if (typeof c === "boolean") continue;
      this.field(`${key}.${name}`, c, (o.required ?? []).includes(name), rows, rules);
    }
    for (const text of ruleTexts(o, "")) rules.push({ at: key, text });
  }

  /** The object schemas a value may be: itself, or the object alternatives of its anyOf. */
  private objectsOf(s: Schema): Schema[] {
    if (s.type === "object") return [s];
    return (s.anyOf ?? []).map((a) => this.resolve(a)).filter((a) => a.type === "object");
  }

  /** `string`, `list of integer`, `map`, `object or false`, `` `allowlist` ``... */
  typeOf(s: Schema): string {
    if (s.anyOf) return [...new Set(s.anyOf.map((a) => this.typeOf(this.resolve(a))))].join(" or ");
    if (s.const !== undefined) return `\`${JSON.stringify(s.const)}\``;
    if (s.type === "array") return `list of ${s.items ? this.typeOf(this.resolve(s.items)) : "anything"}`;
    if (s.type === "object" && typeof s.additionalProperties === "object") return "map";
    return s.type ?? "any";
  }

  /** What values pass: enum, range, length, list size, the pattern's message; a list's item constraints after `each:`. */
  allowedOf(s: Schema): string {
    if (s.anyOf) return s.anyOf.map((a) => this.allowedOf(this.resolve(a))).filter(Boolean).join("; or ");
    const parts: string[] = [];
    if (s.enum) parts.push(s.enum.map((v) => `\`${JSON.stringify(v)}\``).join(", "));
    if (s.minimum !== undefined && s.maximum !== undefined) parts.push(`${s.minimum}–${s.maximum}`);
    else if (s.minimum !== undefined) parts.push(`at least ${s.minimum}`);
    else if (s.maximum !== undefined) parts.push(`at most ${s.maximum}`);
    if (s.maxLength !== undefined && !s.patternErrorMessage) parts.push(`at most ${s.maxLength} characters`);
    if (s.patternErrorMessage) parts.push(s.patternErrorMessage);
    else if (s.pattern) parts.push(s.pattern.length <= PATTERN_SHOWN_MAX ? `matches \`${s.pattern}\`` : "a checked pattern (see `netfleet schema`)");
    if (s.minItems !== undefined) parts.push(`at least ${s.minItems} ${s.minItems === 1 ? "item" : "items"}`);
    if (s.maxItems !== undefined) parts.push(`at most ${s.maxItems} ${s.maxItems === 1 ? "item" : "items"}`);
    if (s.uniqueItems) parts.push("no duplicates");
    if (s.type === "array" && s.items) {
      const item = this.allowedOf(this.resolve(s.items));
      if (item) parts.push(`each: ${item}`);
    }
    return parts.join("; ");
  }
}

/** The name a map's keys stand for: the first word of `Network name: ...` (their propertyNames' description), else `name`. */
function placeholder(key: string, names: Schema): string {
  const m = /^(\w+) (?:name|key)\b/i.exec(names.description ?? "");
  return m ? m[1]!.toLowerCase() : key.split(".").at(-1)!.replace(/s$/, "") || "name";
}

/** The rules of object schema `o` (its allOf's if/then, not, plain constraints; its oneOf), in words. */
function ruleTexts(o: Schema, at: string): string[] {
  const out: string[] = [];
  if (o.oneOf) out.push(`exactly one of: ${o.oneOf.map((x) => clauses(x, at, "if").join(" and ")).join("; ")}.`);
  for (const r of o.allOf ?? []) {
    if (r.$ref) continue;
    if (r.if && r.then) out.push(`if ${clauses(r.if, at, "if").join(" and ")}, then ${clauses(r.then, at, "then").join(" and ")}.`);
    else if (r.not) out.push(`never: ${clauses(r.not, at, "if").join(" and ")}.`);
    else out.push(`${clauses(r, at, "then").join(" and ")}.`);
  }
  return out;
}

/**
 * What schema `s` says of the keys of the object at `at`, one clause per
 * constraint (`` `egress` is `"open"` ``). In an `if`, a constraint on a key
 * that is not required also holds when the key is absent (JSON Schema's
 * `properties` apply only to keys that are there): it reads "... or not set".
 */
function clauses(s: Schema, at: string, mode: "if" | "then"): string[] {
  const out: string[] = [];
  for (const x of s.allOf ?? []) out.push(...clauses(x, at, mode));
  if (s.anyOf) out.push(`(${s.anyOf.map((x) => clauses(x, at, mode).join(" and ")).join(" or ")})`);
  for (const [k, v] of Object.entries(s.properties ?? {})) {
    const key = at ? `${at}.${k}` : k;
    const required = (s.required ?? []).includes(k);
    if (v === false) {
      out.push(`\`${key}\` is not set`);
      continue;
    }
    const said = v === true ? [] : valueClauses(v, key, mode);
    if (said.length === 0) {
      if (required) out.push(`\`${key}\` is set`);
      continue;
    }
    const nested = v !== true && v.type === "object";
    out.push(...(mode === "if" && !required && !nested ? said.map((c) => `${c} or not set`) : said));
  }
  return out;
}

/** Clauses on the value of one key (`key`): its const, enum, range, list size, pattern it must not match, or the keys inside it. */
function valueClauses(v: Schema, key: string, mode: "if" | "then"): string[] {
  const k = `\`${key}\``;
  const out: string[] = [];
  if (v.const !== undefined) out.push(`${k} is \`${JSON.stringify(v.const)}\``);
  if (v.enum) out.push(`${k} is one of ${v.enum.map((e) => `\`${JSON.stringify(e)}\``).join(", ")}`);
  if (v.not?.enum) out.push(`${k} is none of ${v.not.enum.map((e) => `\`${JSON.stringify(e)}\``).join(", ")}`);
  if (v.not?.pattern) out.push(`${k} is not ${PATTERN_WORDS.get(v.not.pattern) ?? `matching \`${v.not.pattern}\``}`);
  if (v.minimum !== undefined) out.push(`${k} is at least ${v.minimum}`);
  if (v.maximum !== undefined) out.push(`${k} is at most ${v.maximum}`);
  if (v.maxItems === 0) out.push(`${k} is empty`);
  else if (v.maxItems !== undefined) out.push(`${k} has at most ${v.maxItems} ${v.maxItems === 1 ? "item" : "items"}`);
  if (v.minItems !== undefined) out.push(`${k} has at least ${v.minItems} ${v.minItems === 1 ? "item" : "items"}`);
  if (v.uniqueItems) out.push(`${k} has no duplicates`);
  if (v.type === "object") {
    if (typeof v.additionalProperties === "object") out.push(...clauses(v.additionalProperties, `${key}.<${placeholder(key, v.propertyNames ?? {})}>`, mode));
    out.push(...clauses({ ...v, allOf: undefined, anyOf: undefined } as Schema, key, mode));
  }
  return out;
}

/** A table cell: pipes escaped, line breaks as spaces. */
function cell(text: string): string {
  return text.replaceAll("|", "\\|").replaceAll("\n", " ");
}
