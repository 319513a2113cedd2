/**
 * The field reference (docs/inventory-reference.md): the committed page is
 * what `inventoryReference()` makes of today's schema (else the test names
 * the command that regenerates it), every key of the schema has its row,
 * and the renderer's cases on a small schema of the same shape as the real
 * one (a map with named keys, a $ref, a list of objects, an object-or-false,
 * rules with if/then, not and oneOf).
 */
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { inventoryReference } from "./reference.ts";
import { inventoryJsonSchema } from "./schema.ts";

const DOC = fileURLToPath(new URL("../../../../docs/inventory-reference.md", import.meta.url));
const REGENERATE = "npm run docs (sh scripts/node.sh packages/controller/src/cli.ts schema --markdown --out docs/inventory-reference.md)";

/** Every property of the schema with a description: its dotted path (maps as `<*>`, lists as `[]`) and the description. */
function describedKeys(s: Record<string, unknown>, at: string, out: { key: string; description: string }[] = []): { key: string; description: string }[] {
  const props = (s.properties ?? {}) as Record<string, Record<string, unknown> | boolean>;
  for (const [name, p] of Object.entries(props)) {
    if (typeof p !== "object") continue;
    const key = at ? `${at}.${name}` : name;
    if (typeof p.description === "string" && !at.includes("if") && !at.includes("then")) out.push({ key, description: p.description });
    describedKeys(p, key, out);
  }
  for (const alt of (s.anyOf ?? []) as Record<string, unknown>[]) describedKeys(alt, at, out);
  if (typeof s.additionalProperties === "object") describedKeys(s.additionalProperties as Record<string, unknown>, `${at}.<*>`, out);
  if (typeof s.items === "object") describedKeys(s.items as Record<string, unknown>, `${at}[]`, out);
  return out;
}

describe("inventory field reference", () => {
  it("docs/inventory-reference.md is the page generated from today's schema", () => {
    const committed = readFileSync(DOC, "utf8");
    const generated = inventoryReference();
    if (committed !== generated) {
      const a = committed.split("\n");
      const b = generated.split("\n");
      const line = a.findIndex((l, i) => l !== b[i]);
      expect.fail(`docs/inventory-reference.md differs from what the schema gives (first at line ${line + 1}: ${JSON.stringify(a[line] ?? "")} vs ${JSON.stringify(b[line] ?? "")}); regenerate it: ${REGENERATE}`);
    }
  });

  it("has a row for every key of the schema, with its description", () => {
    const page = inventoryReference();
    const keys = describedKeys(inventoryJsonSchema(), "");
    expect(keys.length).toBeGreaterThan(80);
    const rows = page.split("\n").filter((l) => l.startsWith("| `"));
    for (const { key, description } of keys) {
      const pattern = new RegExp(`^\\| \`${key.replaceAll(".", "\\.").replaceAll("[]", "\\[\\]").replaceAll("<*>", "<[a-z]+>")}\` \\|`);
      const row = rows.find((r) => pattern.test(r));
      expect(row, `no row for ${key}`).toBeDefined();
      expect(row).toContain(description.replaceAll("|", "\\|"));
    }
  });

  it("renders types, defaults, allowed values and rules of a small schema", () => {
    const page = inventoryReference({
      description: "A test file",
      definitions: { cidr: { type: "string", pattern: "^x$", patternErrorMessage: "must be a CIDR" } },
      properties: {
        nets: {
          type: "object",
          description: "Networks",
          propertyNames: { type: "string", description: "Net name: short", patternErrorMessage: "net names are short" },
          additionalProperties: {
            type: "object",
            description: "One net",
            properties: {
              vlan: { type: "integer", minimum: 1, maximum: 4094, description: "VLAN id" },
              cidr: { description: "Its block", allOf: [{ $ref: "#/definitions/cidr" }] },
              egress: { type: "string", enum: ["open", "allowlist"], default: "open", description: "Egress" },
              dhcp: { description: "DHCP", anyOf: [{ type: "object", properties: { start: { type: "string", description: "First" } }, required: ["start"] }, { type: "boolean", const: false }] },
              forwards: { type: "array", minItems: 1, items: { type: "object", properties: { port: { type: "integer", minimum: 1, maximum: 65535, description: "Port" } }, oneOf: [{ properties: { port: true }, required: ["port"] }] } },
              tags: { type: "array", uniqueItems: true, items: { type: "string", pattern: "^[a-z]+$" }, description: "Tags" },
            },
            required: ["vlan", "cidr"],
            allOf: [
              { if: { properties: { egress: { const: "open" } }, required: ["egress"] }, then: { properties: { dhcp: false } } },
              { not: { properties: { tags: { type: "array", maxItems: 0 } }, required: ["tags"] } },
            ],
          },
        },
      },
    });
    expect(page).toContain("# Inventory field reference\n\nA test file.\n");
    expect(page).toContain("- [nets](#nets)\n");
    const table = page.split("\n").filter((l) => l.startsWith("| `"));
    expect(table).toEqual([
      "| `nets` | map |  |  | Networks |",
      "| `nets.<net>` | object |  | net names are short | Net name: short. One net |",
      "| `nets.<net>.vlan` | integer | *required* | 1–4094 | VLAN id |",
      "| `nets.<net>.cidr` | string | *required* | must be a CIDR | Its block |",
      '| `nets.<net>.egress` | string | `"open"` | `"open"`, `"allowlist"` | Egress |',
      "| `nets.<net>.dhcp` | object or `false` |  |  | DHCP |",
      "| `nets.<net>.dhcp.start` | string | *required* |  | First |",
      "| `nets.<net>.forwards` | list of object |  | at least 1 item |  |",
      "| `nets.<net>.forwards[].port` | integer |  | 1–65535 | Port |",
      "| `nets.<net>.tags` | list of string |  | no duplicates; each: matches `^[a-z]+$` | Tags |",
    ]);
    expect(page).toContain(
      [
        "Rules between keys:",
        "",
        "- `nets.<net>.forwards[]`: exactly one of: `port` is set.",
        '- `nets.<net>`: if `egress` is `"open"`, then `dhcp` is not set.',
        "- `nets.<net>`: never: `tags` is empty.",
      ].join("\n"),
    );
  });
});
