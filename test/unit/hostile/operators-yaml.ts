/**
 * Content-level operators: bytes and YAML that are not a sane inventory.
 * NUL bytes, invalid UTF-8, file names, keys and values carrying newlines,
 * escape sequences and bidi overrides (a forged error line, a repainted
 * terminal), deep nesting, alias bombs, duplicate keys, a 20,000-key mapping,
 * unknown tags.
 */
import fc from "fast-check";
import { op, q, type Operator } from "./operator.ts";
import type { Site } from "./site.ts";

/**
 * Pieces a message must never print raw: line breaks (LF, CR, NEL, U+2028),
 * terminal escape sequences (CSI, OSC, the 8-bit CSI), bidi overrides and
 * isolates, DEL, backspace.
 */
export const HOSTILE_PIECES = [
  "\n",
  "\r",
  "\u0085",
  "\u2028",
  "\u001b[2J",
  "\u001b]0;pwned\u0007",
  "\u009b31m",
  "\u202e",
  "\u2066",
  "\u007f",
  "\b",
  "\t",
] as const;

/** A name of plain letters with at least one hostile piece in it. */
const hostileName = fc
  .tuple(fc.constantFrom("a", "net", "vm", "hv"), fc.array(fc.constantFrom(...HOSTILE_PIECES, "x", "1", "-"), { minLength: 0, maxLength: 3 }), fc.constantFrom(...HOSTILE_PIECES))
  .map(([head, mid, piece]) => head + mid.join("") + piece + "z");

/** A whole forged problem line, as someone would put in a file name or key to fake a clean report. */
const FORGED = "\nnetworks.yaml:1:1: (document): all good\n";

/** Appends a top-level line to networks.yaml. */
function appendLine(s: Site, line: string): void {
  s.setText("networks.yaml", s.text("networks.yaml") + line + "\n");
}

/** hv1 gets `labels: { <key>: <value> }`, written as the YAML `snippet` (a flow or block node). */
function withLabelText(s: Site, key: string, snippet: string): void {
  s.host("hv1").labels = { [key]: "PLACEHOLDER" };
  s.setText("hosts.yaml", s.text("hosts.yaml").replace("PLACEHOLDER", snippet));
}

function bytesWith(s: Site, file: string, at: "comment" | "label-value" | "key" | "end", bytes: number[]): Buffer {
  const text = s.text(file);
  const raw = Buffer.from(bytes);
  const t = (x: string) => Buffer.from(x, "utf8");
  if (at === "end") return Buffer.concat([t(text), raw]);
  if (at === "comment") return Buffer.concat([t("# note: "), raw, t("\n"), t(text)]);
  if (at === "key") return Buffer.concat([t(text), t("k"), raw, t(": 1\n")]);
  const marker = "PLACEHOLDER";
  const i = text.indexOf(marker);
  return Buffer.concat([t(text.slice(0, i) + "ab"), raw, t("cd" + text.slice(i + marker.length))]);
}

const INVALID_UTF8: Record<string, number[]> = {
  "lone 0xff": [0xff],
  "overlong '/'": [0xc0, 0xaf],
  "UTF-16 surrogate": [0xed, 0xa0, 0x80],
  "5-byte form": [0xf8, 0x88, 0x80, 0x80, 0x80],
  "lone continuation": [0x80],
  "truncated sequence": [0xe2, 0x82],
};

export const yamlOperators: Operator[] = [
  op(
    "yaml",
    "file-name-control-chars",
    12,
    fc.record({ name: hostileName, forged: fc.boolean() }),
    ({ name, forged }) => {
      const file = (forged ? name + FORGED : name) + ".yaml";
      return {
        detail: `a file named ${q(file)} holding an unknown top-level key`,
        apply: (s) => s.setText(file, "netwrks: {}\n"),
      };
    },
  ),
  op(
    "yaml",
    "key-control-chars",
    30,
    fc.record({
      name: hostileName,
      forged: fc.boolean(),
      place: fc.constantFrom("top-level", "site", "network", "vm", "uplink", "network-name", "vm-name", "host-name", "group-name", "label-key", "cluster-group"),
      raw: fc.boolean(),
    }),
    ({ name, forged, place, raw }) => {
      const key = forged ? name + FORGED : name;
      return {
        detail: raw ? `raw (unquoted) key ${q(key)} at the top level of networks.yaml` : `key ${q(key)} as ${place}`,
        apply: (s) => {
          if (raw) return appendLine(s, `${key}: 1`);
          const net = s.network("alpha");
          const vms = net.vms as Record<string, unknown>;
          switch (place) {
            case "top-level":
              s.doc("networks.yaml")[key] = 1;
              break;
            case "site":
              s.site[key] = "x";
              break;
            case "network":
              net[key] = true;
              break;
            case "vm":
              (vms.vm1 as Record<string, unknown>)[key] = 1;
              break;
            case "uplink":
              s.uplink("hv1")[key] = 1;
              break;
            case "network-name":
              s.networks[key] = { vlan: 300, cidr: "10.30.0.0/24", gateway: "10.30.0.1", egress: "open" };
              break;
            case "vm-name":
              vms[key] = { mac: "52:54:00:01:00:99", ip: "10.1.0.12", host: "hv1" };
              break;
            case "host-name":
              s.hosts[key] = { groups: ["vmhosts"], address: "10.0.0.40", uplink: { mode: "kernel", members: ["eth0"] } };
              break;
            case "group-name":
              s.groups[key] = { role: "vmhost" };
              break;
            case "label-key":
              s.host("hv1").labels = { [key]: "x" };
              break;
            case "cluster-group":
              net.cluster_groups = { [key]: ["vm1", "vm9"] };
              break;
          }
        },
      };
    },
  ),
  op(
    "yaml",
    "value-control-chars",
    16,
    fc.record({
      value: hostileName,
      place: fc.constantFrom("vm-host", "host-group", "host-network", "forward-vm", "allow-name", "external-interface", "site-name", "mac", "cluster-member", "lease-time"),
    }),
    ({ value, place }) => ({
      detail: `value ${q(value)} as ${place}`,
      apply: (s) => {
        const net = s.network("alpha");
        const vm1 = (net.vms as Record<string, Record<string, unknown>>).vm1!;
        if (place === "vm-host") vm1.host = value;
        else if (place === "host-group") s.host("hv1").groups = ["vmhosts", value];
        else if (place === "host-network") s.host("hv1").networks = ["alpha", value];
        else if (place === "forward-vm") (net.port_forwards as Record<string, unknown>[])[0]!.vm = value;
        else if (place === "allow-name") (vm1.allow as Record<string, unknown>[])[0] = { name: value, ports: [443] };
        else if (place === "external-interface") s.host("gw").external_interface = value;
        else if (place === "site-name") s.site.name = value;
        else if (place === "mac") vm1.mac = value;
        else if (place === "cluster-member") net.cluster_groups = { web: ["vm1", value] };
        else (net.dhcp as Record<string, unknown>).lease_time = value;
      },
    }),
  ),
  op(
    "yaml",
    "nul-bytes",
    6,
    fc.record({ at: fc.constantFrom("comment" as const, "label-value" as const, "key" as const, "end" as const), n: fc.constantFrom(1, 64) }),
    ({ at, n }) => ({
      detail: `${n} NUL byte(s) in hosts.yaml (${at})`,
      apply: (s) => {
        if (at === "label-value") s.host("hv1").labels = { owner: "PLACEHOLDER" };
        s.files.set("hosts.yaml", { kind: "bytes", bytes: bytesWith(s, "hosts.yaml", at, new Array(n).fill(0)) });
      },
    }),
  ),
  op(
    "yaml",
    "invalid-utf8",
    12,
    fc.record({ at: fc.constantFrom("comment" as const, "label-value" as const, "key" as const, "end" as const), form: fc.constantFrom(...Object.keys(INVALID_UTF8)) }),
    ({ at, form }) => ({
      detail: `invalid UTF-8 (${form}) in hosts.yaml (${at})`,
      apply: (s) => {
        if (at === "label-value") s.host("hv1").labels = { owner: "PLACEHOLDER" };
        s.files.set("hosts.yaml", { kind: "bytes", bytes: bytesWith(s, "hosts.yaml", at, INVALID_UTF8[form]!) });
      },
    }),
  ),
  op(
    "yaml",
    "deep-nesting",
    9,
    fc.record({ shape: fc.constantFrom("flow-seq", "flow-map", "block-map", "block-seq"), depth: fc.constantFrom(1_000, 5_000, 20_000) }),
    ({ shape, depth }) => {
      const d = shape.startsWith("block") ? Math.min(depth, 1_000) : depth;
      return {
        detail: `${shape} nested ${d} deep as a label value`,
        apply: (s) => {
          if (shape === "flow-seq") return withLabelText(s, "deep", "[".repeat(d) + "]".repeat(d));
          if (shape === "flow-map") return withLabelText(s, "deep", "{a: ".repeat(d) + "1" + "}".repeat(d));
          const lines: string[] = [];
          for (let i = 0; i < d; i++) lines.push(" ".repeat(8 + i) + (shape === "block-map" ? "a:" : "-"));
          lines.push(" ".repeat(8 + d) + "x");
          s.host("hv1").labels = { deep: "PLACEHOLDER" };
          const text = s.text("hosts.yaml");
          s.setText("hosts.yaml", text.slice(0, text.indexOf("PLACEHOLDER")) + "\n" + lines.join("\n") + text.slice(text.indexOf("PLACEHOLDER") + 11));
        },
      };
    },
  ),
  op(
    "yaml",
    "alias-bomb",
    10,
    fc.record({ levels: fc.integer({ min: 6, max: 10 }), width: fc.integer({ min: 6, max: 10 }), place: fc.constantFrom("label", "top-level", "vms", "merge") }),
    ({ levels, width, place }) => ({
      detail: `alias bomb: ${levels} levels of ${width} aliases (${place})`,
      apply: (s) => {
        const lines = ["bomb0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"];
        for (let i = 1; i <= levels; i++) {
          const refs = new Array(width).fill(`*a${i - 1}`).join(", ");
          lines.push(place === "merge" ? `bomb${i}: &a${i} {<<: [${refs}]}` : `bomb${i}: &a${i} [${refs}]`);
        }
        const last = `*a${levels}`;
        if (place === "label") lines.push(`hosts: {hv1: {labels: {bomb: ${last}}}}`);
        else if (place === "vms") lines.push(`networks: {gamma: {vlan: 300, cidr: 10.30.0.0/24, gateway: 10.30.0.1, egress: open, vms: ${last}}}`);
        s.setText("zz-bomb.yaml", lines.join("\n") + "\n");
      },
    }),
  ),
  op(
    "yaml",
    "duplicate-keys",
    10,
    fc.constantFrom("top-level", "network-name", "vlan", "vm-mac", "quoted-vlan", "flow-map", "bool-vs-string", "int-vs-string", "null-forms", "host-address"),
    (form) => ({
      detail: `duplicate key (${form})`,
      apply: (s) => {
        const text = s.text("networks.yaml");
        const dup: Record<string, () => string> = {
          "top-level": () => text + "networks:\n  gamma: {vlan: 300, cidr: 10.30.0.0/24, gateway: 10.30.0.1, egress: open}\n",
          "network-name": () => text + "  alpha:\n    vlan: 301\n    cidr: 10.31.0.0/24\n    gateway: 10.31.0.1\n    egress: open\n",
          vlan: () => text.replace("    vlan: 101\n", "    vlan: 101\n    vlan: 111\n"),
          "vm-mac": () => text.replace("        mac: 52:54:00:01:00:01\n", "        mac: 52:54:00:01:00:01\n        mac: 52:54:00:01:00:07\n"),
          "quoted-vlan": () => text.replace("    vlan: 101\n", "    vlan: 101\n    \"vlan\": 111\n"),
          "flow-map": () => text + "zz: {a: 1, a: 2}\n",
          "bool-vs-string": () => text,
          "int-vs-string": () => text,
          "null-forms": () => text + "~: 1\nnull: 2\n",
          "host-address": () => text,
        };
        s.setText("networks.yaml", dup[form]!());
        const hosts = s.text("hosts.yaml");
        if (form === "bool-vs-string") s.setText("hosts.yaml", hosts.replace("  hv1:\n", "  hv1:\n    labels: {true: a, \"true\": b}\n"));
        if (form === "int-vs-string") s.setText("hosts.yaml", hosts.replace("  hv1:\n", "  hv1:\n    labels: {1: a, \"1\": b}\n"));
        if (form === "host-address") s.setText("hosts.yaml", hosts.replace("    address: 10.0.0.11\n", "    address: 10.0.0.11\n    address: 10.0.0.2\n"));
      },
    }),
  ),
  op(
    "yaml",
    "twenty-thousand-keys",
    3,
    fc.constantFrom("labels-then-bad-key", "unknown-keys", "labels-then-duplicate"),
    (form) => ({
      detail: `a 20,000-key mapping (${form})`,
      apply: (s) => {
        const keys: string[] = [];
        for (let i = 0; i < 20_000; i++) keys.push(`      k${i.toString().padStart(5, "0")}: v`);
        if (form === "unknown-keys") {
          s.setText("zz-keys.yaml", "networks:\n  alpha:\n" + keys.map((k) => k.slice(2)).join("\n") + "\n");
          return;
        }
        keys.push(form === "labels-then-bad-key" ? "      Not A Label: v" : "      k00000: again");
        const hosts = s.text("hosts.yaml");
        s.setText("hosts.yaml", hosts.replace("  hv1:\n", "  hv1:\n    labels:\n" + keys.join("\n") + "\n"));
      },
    }),
  ),
  op(
    "yaml",
    "unknown-tag",
    6,
    fc.constantFrom("!!binary aGVsbG8=", "!!set {a, b}", "!!omap [a: 1]", "!!js/function 'x'", "!<tag:evil%E2%80%AE%1B[2J> x", "!e%0Aforged x"),
    (tagged) => ({
      detail: `label value ${q(tagged)}`,
      apply: (s) => withLabelText(s, "t", tagged),
    }),
  ),
  op(
    "yaml",
    "long-token",
    8,
    fc.record({ place: fc.constantFrom("unknown-key", "network-name", "vm-host", "host-group", "duplicate-key", "unclosed-flow", "label-key"), n: fc.constantFrom(100_000, 3_000_000) }),
    ({ place, n }) => {
      // 3 MB tokens only where YAML can hold them under the 4 MiB cap in one file.
      const len = place === "unclosed-flow" ? n : Math.min(n, 100_000);
      return {
        detail: `a ${len}-character token as ${place}`,
        apply: (s) => {
          const t = "x".repeat(len);
          if (place === "unknown-key") s.doc("networks.yaml")[t] = 1;
          else if (place === "network-name") s.networks[t] = { vlan: 300, cidr: "10.30.0.0/24", gateway: "10.30.0.1", egress: "open" };
          else if (place === "vm-host") (s.network("alpha").vms as Record<string, Record<string, unknown>>).vm1!.host = t;
          else if (place === "host-group") s.host("hv1").groups = ["vmhosts", t];
          else if (place === "label-key") s.host("hv1").labels = { [t.toUpperCase()]: "v" };
          else if (place === "duplicate-key") s.setText("networks.yaml", s.text("networks.yaml") + `${t}: 1\n${t}: 2\n`);
          else s.setText("zz-long.yaml", `site: [${t}\n`);
        },
      };
    },
  ),
];
