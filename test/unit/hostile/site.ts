/**
 * A site folder being built by the hostile-inventory generator: the files of
 * test/unit/bad-inventories/_baseline (a valid site) as parsed documents,
 * which mutation operators change, plus the file-level entries YAML cannot
 * express (symlinks, FIFOs, directories, raw bytes). `writeSite` puts it on
 * disk.
 */
import { execFileSync } from "node:child_process";
import { closeSync, mkdirSync, openSync, readFileSync, readdirSync, symlinkSync, writeFileSync, ftruncateSync } from "node:fs";
import { join, relative } from "node:path";
import { parse, stringify } from "yaml";

export const BASELINE = join(import.meta.dirname, "..", "bad-inventories", "_baseline");

/** One entry of the folder, by file name. */
export type Entry =
  | { kind: "doc"; doc: Record<string, unknown> }
  | { kind: "text"; text: string }
  | { kind: "bytes"; bytes: Buffer }
  /** `target` is a path, or `secret` names a secret file outside the folder (linked by absolute or relative path). */
  | { kind: "symlink"; target: string; secret?: { form: SecretForm; relative: boolean } }
  | { kind: "fifo" }
  | { kind: "dir"; inner: Record<string, string> }
  /** A file of `size` bytes that takes no disk space (ftruncate). */
  | { kind: "sparse"; size: number };

/**
 * The shapes of the "secret" files outside the site folder that hostile
 * symlinks point to; each carries the run's marker where a careless error
 * message would echo it: a shadow-style line, a YAML key, a network name, a
 * YAML syntax error, a shell assignment.
 */
export const SECRET_FORMS = ["shadow", "key", "network", "syntax", "env"] as const;
export type SecretForm = (typeof SECRET_FORMS)[number];

/** The text of the secret file of `form`, carrying `marker` (a valid network name). */
export function secretText(form: SecretForm, marker: string): string {
  switch (form) {
    case "shadow":
      return `root:$6$${marker}$Xk9.wq:19700:0:99999:7:::\nnetfleet:!:19700::::::\n`;
    case "key":
      return `${marker}: 1\n`;
    case "network":
      // VLAN 101 is alpha's: a duplicate, reported at this file's network.
      return `networks:\n  ${marker}:\n    vlan: 101\n    cidr: 10.77.0.0/24\n    gateway: 10.77.0.1\n    egress: open\n`;
    case "syntax":
      return `site: [${marker}, {\n`;
    case "env":
      return `export NETFLEET_TOKEN=${marker}\n`;
  }
}

type Obj = Record<string, unknown>;

let baselineDocs: [string, Obj][] | undefined;

/** The entries of one site folder by file name, with accessors into the baseline's documents. */
export class Site {
  readonly files = new Map<string, Entry>();

  /** A fresh copy of the baseline site (read and parsed once per process). */
  static baseline(): Site {
    baselineDocs ??= readdirSync(BASELINE).sort().map((name) => [name, parse(readFileSync(join(BASELINE, name), "utf8")) as Obj]);
    const site = new Site();
    for (const [name, doc] of baselineDocs) site.files.set(name, { kind: "doc", doc: structuredClone(doc) });
    return site;
  }

  /** The parsed document of `file` (it must still be one). */
  doc(file: string): Obj {
    const e = this.files.get(file);
    if (e?.kind !== "doc") throw new Error(`generator: ${file} is no longer a document`);
    return e.doc;
  }

  get site(): Obj {
    return this.doc("site.yaml").site as Obj;
  }
  get hosts(): Record<string, Obj> {
    return this.doc("hosts.yaml").hosts as Record<string, Obj>;
  }
  get groups(): Record<string, Obj> {
    return this.doc("hosts.yaml").groups as Record<string, Obj>;
  }
  get networks(): Record<string, Obj> {
    return this.doc("networks.yaml").networks as Record<string, Obj>;
  }
  host(name: string): Obj {
    return this.hosts[name]!;
  }
  uplink(host: string): Obj {
    return this.host(host).uplink as Obj;
  }
  network(name: string): Obj {
    return this.networks[name]!;
  }

  /** The YAML text of `file` as it will be written; a document becomes text from here on. */
  text(file: string): string {
    const e = this.files.get(file);
    if (e === undefined) throw new Error(`generator: no ${file}`);
    if (e.kind === "text") return e.text;
    if (e.kind !== "doc") throw new Error(`generator: ${file} is not text`);
    return render(e.doc);
  }

  setText(file: string, text: string): void {
    this.files.set(file, { kind: "text", text });
  }

  /** A second VM host `hv2` like hv1 (group vmhosts), for checks across hosts. */
  addHost2(uplink: Obj = { mode: "kernel", members: ["eth0", "eth1"] }): Obj {
    const h = { groups: ["vmhosts"], address: "10.0.0.12", uplink };
    this.hosts.hv2 = h;
    return h;
  }

  /** hv1's uplink in OVS trunk mode (bond members enslaved to an OVS bond on br-uplink). */
  ovsTrunk(host = "hv1", extra: Obj = {}): Obj {
    const up = { mode: "ovs-trunk", members: ["eth0", "eth1"], ...extra };
    this.host(host).uplink = up;
    return up;
  }
}

/** YAML text of a document, block style, keys in the document's order. */
export function render(doc: unknown): string {
  return stringify(doc, { lineWidth: 0 });
}

/**
 * Writes `site` into the empty folder `dir`. `secret(form)` is the path of
 * the secret file of that form, outside the folder.
 */
export function writeSite(site: Site, dir: string, secret: (form: SecretForm) => string): void {
  mkdirSync(dir, { recursive: true });
  for (const [name, e] of site.files) {
    const path = join(dir, name);
    switch (e.kind) {
      case "doc":
        writeFileSync(path, render(e.doc));
        break;
      case "text":
        writeFileSync(path, e.text);
        break;
      case "bytes":
        writeFileSync(path, e.bytes);
        break;
      case "symlink": {
        const target = e.secret === undefined ? e.target : e.secret.relative ? relative(dir, secret(e.secret.form)) : secret(e.secret.form);
        symlinkSync(target, path);
        break;
      }
      case "fifo":
        execFileSync("mkfifo", ["-m", "600", path]);
        break;
      case "dir":
        mkdirSync(path);
        for (const [inner, text] of Object.entries(e.inner)) writeFileSync(join(path, inner), text);
        break;
      case "sparse": {
        const fd = openSync(path, "w");
        try {
          ftruncateSync(fd, e.size);
        } finally {
          closeSync(fd);
        }
        break;
      }
    }
  }
}
