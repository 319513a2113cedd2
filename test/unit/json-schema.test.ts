import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { Ajv, type ValidateFunction } from "ajv";
import { parseAllDocuments } from "yaml";
import { describe, expect, it } from "vitest";
import { InventoryError, inventoryJsonSchema, loadInventory } from "@netfleet/shared";
import { NOT_IN_SCHEMA, YAML_LEVEL } from "./json-schema-limits.ts";

// The JSON Schema editors use (inventories/netfleet.schema.json, written by
// `netfleet schema`) run through ajv, a real JSON Schema validator, over the
// same inputs as the loader: every good inventory must pass it, every bad
// inventory case must fail it in at least one file unless the case is listed
// in json-schema-limits.ts with the reason a per-file JSON Schema cannot see it.

const repo = join(import.meta.dirname, "..", "..");
const committedPath = join(repo, "inventories", "netfleet.schema.json");
const badRoot = join(repo, "test", "unit", "bad-inventories");

/** ajv in strict mode, knowing the editor-only annotation keyword the schema uses. */
function compile(schema: object): ValidateFunction {
  const ajv = new Ajv({ strict: true, allErrors: true });
  // yaml-language-server and VS Code show it instead of "does not match pattern".
  ajv.addKeyword({ keyword: "patternErrorMessage", schemaType: "string" });
  return ajv.compile(schema);
}

const validate = compile(JSON.parse(readFileSync(committedPath, "utf8")) as object);

function yamlFiles(dir: string): string[] {
  return readdirSync(dir)
    .filter((n) => /\.ya?ml$/.test(n) && statSync(join(dir, n)).isFile())
    .sort()
    .map((n) => join(dir, n));
}

/**
 * One file as an editor sees it: each YAML document parsed (YAML 1.2, no
 * merge keys, duplicate keys an error) and, when it parses, checked against
 * the schema. `yaml` lists the parser's complaints, `schema` ajv's.
 */
function check(path: string): { yaml: string[]; schema: string[] } {
  const out = { yaml: [] as string[], schema: [] as string[] };
  for (const doc of parseAllDocuments(readFileSync(path, "utf8"), { uniqueKeys: true, merge: false })) {
    const complaints = [...doc.errors, ...doc.warnings].map((e) => e.message.split("\n")[0]!);
    if (complaints.length > 0) {
      out.yaml.push(...complaints);
      continue;
    }
    let value: unknown;
    try {
      value = doc.toJS({ maxAliasCount: 100 });
    } catch (err) {
      out.yaml.push((err as Error).message);
      continue;
    }
    if (value === null || value === undefined) continue; // an empty file
    if (!validate(value)) out.schema.push(...(validate.errors ?? []).map((e) => `${e.instancePath || "/"} ${e.message ?? ""}`));
  }
  return out;
}

/** Site folders under `root` (any depth) that hold YAML files and that loadInventory accepts. */
function acceptedSites(root: string): string[] {
  if (!existsSync(root)) return [];
  const out: string[] = [];
  const walk = (dir: string, depth: number) => {
    if (depth > 6) return;
    if (yamlFiles(dir).length > 0) {
      try {
        loadInventory(dir);
        out.push(dir);
      } catch (err) {
        if (!(err instanceof InventoryError)) throw err;
      }
    }
    for (const n of readdirSync(dir)) if (statSync(join(dir, n)).isDirectory()) walk(join(dir, n), depth + 1);
  };
  walk(root, 0);
  return out;
}

describe("inventory JSON Schema", () => {
  it("the committed netfleet.schema.json is what `netfleet schema` writes today (else: npm run schema)", () => {
    expect(readFileSync(committedPath, "utf8")).toBe(JSON.stringify(inventoryJsonSchema(), null, 2) + "\n");
  });

  it("compiles in ajv's strict mode (no unknown keyword, no keyword without its type)", () => {
    expect(() => compile(inventoryJsonSchema())).not.toThrow();
  });

  const fixed = ["inventories/lab", "inventories/reference", "test/kernel/site", "test/bootstrap/site", "test/unit/bad-inventories/_baseline"];
  const found = [...acceptedSites(join(repo, "test", "lab")), ...acceptedSites(join(repo, "test", "unit", "field-cases"))].map((d) => relative(repo, d));
  const good = [...new Set([...fixed, ...found])];

  it("finds the field cases' accepted sites", () => {
    expect(found.filter((d) => d.startsWith("test/unit/field-cases")).length).toBeGreaterThanOrEqual(10);
  });

  it.each(good)("good inventory %s passes in every file", (site) => {
    const files = yamlFiles(join(repo, site));
    expect(files.length).toBeGreaterThan(0);
    for (const file of files) expect({ file: relative(repo, file), ...check(file) }).toEqual({ file: relative(repo, file), yaml: [], schema: [] });
  });

  const cases = readdirSync(badRoot).filter((n) => n !== "_baseline" && statSync(join(badRoot, n)).isDirectory()).sort();

  it("the exception lists name only existing cases, each once", () => {
    const listed = [...Object.keys(NOT_IN_SCHEMA), ...Object.keys(YAML_LEVEL)];
    expect(listed.filter((n) => !cases.includes(n))).toEqual([]);
    expect(Object.keys(NOT_IN_SCHEMA).filter((n) => n in YAML_LEVEL)).toEqual([]);
  });

  it.each(cases)("bad inventory %s", (name) => {
    const results = yamlFiles(join(badRoot, name)).map(check);
    const bySchema = results.some((r) => r.schema.length > 0);
    const byYaml = results.some((r) => r.yaml.length > 0);
    if (name in YAML_LEVEL) {
      // Not JSON data at all: the editor's YAML parser reports it, as the loader does.
      expect({ byYaml, bySchema }).toEqual({ byYaml: true, bySchema: false });
    } else if (name in NOT_IN_SCHEMA) {
      // Listed as beyond a per-file JSON Schema: it must really pass (else take it off the list).
      expect({ byYaml, bySchema }).toEqual({ byYaml: false, bySchema: false });
    } else {
      expect(bySchema, `ajv accepts every file of ${name}; make the schema refuse it or list it in json-schema-limits.ts with the reason`).toBe(true);
    }
  });

  it("describes every field: properties, list items, mapping values and union branches", () => {
    const missing: string[] = [];
    const walk = (node: unknown, at: string) => {
      if (typeof node !== "object" || node === null) return;
      const s = node as Record<string, unknown>;
      if (typeof s.description !== "string" || s.description.length < 10) missing.push(at);
      for (const [k, v] of Object.entries((s.properties ?? {}) as Record<string, unknown>)) walk(v, `${at}.${k}`);
      if (s.items) walk(s.items, `${at}[]`);
      if (typeof s.additionalProperties === "object") walk(s.additionalProperties, `${at}.*`);
      for (const [i, b] of ((s.anyOf ?? []) as unknown[]).entries()) walk(b, `${at}|${i}`);
    };
    walk(inventoryJsonSchema(), "(file)");
    expect(missing).toEqual([]);
  });
});
