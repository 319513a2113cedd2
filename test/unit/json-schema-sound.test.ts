import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Ajv } from "ajv";
import { parse, stringify } from "yaml";
import { afterAll, describe, expect, it } from "vitest";
import { InventoryError, inventoryJsonSchema, loadInventory } from "@netfleet/shared";

// The schema's rules between keys (schema-rules.ts) claim to refuse only
// what `netfleet validate` refuses, so an editor never flags a file the
// loader accepts. Checked here the hard way: the bad-inventory baseline
// with every combination of the keys those rules read (uplink mode, bond
// mode, lacp, members, carries_management; role, groups, external
// interfaces; egress, dns, DHCP, static ip, allow lists; the DNS TTL and
// name-set timeout; VLAN 1) is written out, loaded by the loader and
// checked by ajv. A site ajv refuses in any file must be one the loader
// refuses. Both sides must also refuse and accept some (no empty test).

type Doc = Record<string, any>;
const baseDir = join(import.meta.dirname, "bad-inventories", "_baseline");
const base = Object.fromEntries(["hosts.yaml", "networks.yaml", "site.yaml"].map((f) => [f, parse(readFileSync(join(baseDir, f), "utf8")) as Doc]));
const work = mkdtempSync(join(tmpdir(), "netfleet-schema-sound-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const ajv = new Ajv({ strict: true, allErrors: true });
ajv.addKeyword({ keyword: "patternErrorMessage", schemaType: "string" });
const validate = ajv.compile(inventoryJsonSchema());

interface Tally {
  unsound: string[];
  bothRefuse: number;
  bothAccept: number;
  loaderOnly: number;
}

/** Writes the baseline changed by `mutate`, and compares the loader with ajv. */
function compare(tally: Tally, label: string, mutate: (files: Record<string, Doc>) => void): void {
  const files = structuredClone(base);
  mutate(files);
  for (const [name, doc] of Object.entries(files)) writeFileSync(join(work, name), stringify(doc));
  let loaderAccepts = true;
  try {
    loadInventory(work, { cwd: work });
  } catch (err) {
    if (!(err instanceof InventoryError)) throw err;
    loaderAccepts = false;
  }
  const schemaRefuses = Object.values(files).some((doc) => !validate(doc));
  if (schemaRefuses && loaderAccepts) tally.unsound.push(`${label}: ${ajv.errorsText(validate.errors)}`);
  else if (schemaRefuses) tally.bothRefuse++;
  else if (loaderAccepts) tally.bothAccept++;
  else tally.loaderOnly++;
}

/** Every combination of the given choices (absent = undefined: the key is left out). */
function* combinations<T extends Record<string, readonly unknown[]>>(choices: T): Generator<{ [K in keyof T]: T[K][number] }> {
  const keys = Object.keys(choices);
  const at = keys.map(() => 0);
  for (;;) {
    yield Object.fromEntries(keys.map((k, i) => [k, choices[k]![at[i]!]])) as { [K in keyof T]: T[K][number] };
    let i = 0;
    while (i < keys.length && ++at[i]! === choices[keys[i]!]!.length) at[i++] = 0;
    if (i === keys.length) return;
  }
}

/** Sets `key` of `obj` to `value`, or removes it for undefined. */
function put(obj: Doc, key: string, value: unknown): void {
  if (value === undefined) delete obj[key];
  else obj[key] = value;
}

const label = (c: object) => JSON.stringify(c);
const tally = (): Tally => ({ unsound: [], bothRefuse: 0, bothAccept: 0, loaderOnly: 0 });

describe("the schema refuses nothing the loader accepts", () => {
  it("host uplink: mode, members, bond_mode, lacp, carries_management, address, with and without groups", () => {
    const t = tally();
    const hv1 = (f: Record<string, Doc>, groups: boolean) => {
      const host = f["hosts.yaml"]!.hosts.hv1;
      if (!groups) Object.assign(host, { role: "vmhost", networks: ["alpha", "beta"] });
      put(host, "groups", groups ? ["vmhosts"] : undefined);
      return host;
    };
    const choices = {
      mode: ["kernel", "ovs-trunk"],
      members: [["eth0"], ["eth0", "eth1"]],
      bond_mode: [undefined, "802.3ad", "balance-tcp", "balance-slb", "balance-xor"],
      lacp: [undefined, "active", "passive", "off"],
      groups: [true, false],
    } as const;
    for (const c of combinations(choices)) {
      compare(t, label(c), (f) => {
        const host = hv1(f, c.groups);
        for (const k of ["mode", "members", "bond_mode", "lacp"] as const) put(host.uplink, k, c[k]);
      });
    }
    for (const c of combinations({ mode: ["kernel", "ovs-trunk"], address: [true, false], groups: [true, false] } as const)) {
      compare(t, label({ carries_management: true, ...c }), (f) => {
        const host = hv1(f, c.groups);
        Object.assign(host.uplink, { mode: c.mode, carries_management: true });
        if (!c.address) delete host.address;
      });
    }
    expect(t.unsound).toEqual([]);
    expect(t.bothRefuse).toBeGreaterThan(50);
    expect(t.bothAccept).toBeGreaterThan(20);
  }, 120_000);

  it("host role, groups, networks and external interfaces, on the backend and on a vmhost", () => {
    const t = tally();
    // gw stays the one backend (or has no role), hv1 a vmhost (or none): another role is always refused (no or two backends).
    for (const [name, roles] of [["gw", [undefined, "backend"]], ["hv1", [undefined, "vmhost"]]] as const) {
      const choices = {
        role: roles,
        groups: [undefined, [], ["vmhosts"]],
        external_interface: [undefined, "wan0"],
        external_interfaces: [undefined, ["wan1"], ["wan1", "wan1"]],
        reserved_ports: [undefined, [{ proto: "tcp", ports: [2022] }]],
        networks: [undefined, ["alpha", "beta"]],
      } as const;
      for (const c of combinations(choices)) {
        compare(t, label({ name, ...c }), (f) => {
          const host = f["hosts.yaml"]!.hosts[name];
          for (const [k, v] of Object.entries(c)) put(host, k, v);
        });
      }
    }
    expect(t.unsound).toEqual([]);
    expect(t.bothRefuse).toBeGreaterThan(50);
    expect(t.bothAccept).toBeGreaterThan(5);
  }, 120_000);

  it("network egress, dns, DHCP, static ip and allow list", () => {
    const t = tally();
    const choices = {
      egress: ["open", "allowlist"],
      dns: [undefined, "open", "allowlist"],
      dns_open_with_allowlist: [undefined, true],
      dhcp: ["range", undefined, false],
      ip: [undefined, "10.2.0.11"],
      allow: [undefined, [{ to: "203.0.113.10" }], [{ to: "169.254.169.254" }], [{ to: "169.0.0.0/8" }]],
    } as const;
    for (const c of combinations(choices)) {
      compare(t, label(c), (f) => {
        const beta = f["networks.yaml"]!.networks.beta;
        for (const k of ["egress", "dns", "dns_open_with_allowlist"] as const) put(beta, k, c[k]);
        if (c.dhcp !== "range") put(beta, "dhcp", c.dhcp);
        put(beta.vms.vm2, "ip", c.ip);
        put(beta.vms.vm2, "allow", c.allow);
      });
    }
    expect(t.unsound).toEqual([]);
    expect(t.bothRefuse).toBeGreaterThan(100);
    expect(t.bothAccept).toBeGreaterThan(10);
  }, 120_000);

  it("site timeouts, and VLAN 1 with the site in the networks' file", () => {
    const t = tally();
    for (const c of combinations({ dns_max_ttl: [undefined, 300, 1800, 1801, 3600], name_set_timeout: [undefined, 599, 600, 3600, 7200] } as const)) {
      compare(t, label(c), (f) => {
        for (const [k, v] of Object.entries(c)) put(f["site.yaml"]!.site, k, v);
      });
    }
    for (const c of combinations({ allow_vlan_1: [undefined, false, true], vlan: [1, 102], together: [true, false] } as const)) {
      compare(t, label(c), (f) => {
        put(f["site.yaml"]!.site, "allow_vlan_1", c.allow_vlan_1);
        f["networks.yaml"]!.networks.beta.vlan = c.vlan;
        if (c.together) {
          f["networks.yaml"]!.site = f["site.yaml"]!.site;
          f["site.yaml"] = {};
        }
      });
    }
    expect(t.unsound).toEqual([]);
    expect(t.bothRefuse).toBeGreaterThanOrEqual(5);
    expect(t.bothAccept).toBeGreaterThan(10);
  }, 120_000);
});
