/**
 * The scratch area of a hostile-inventory run: one temporary folder holding
 * the secret files (outside every site folder), the case folders, and the
 * run's unique marker, which the secret files carry and the loading
 * processes also hold in their environment (/proc/self/environ).
 */
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SECRET_FORMS, secretText, writeSite, type SecretForm, type Site } from "./site.ts";

/** One run's temporary folder: secrets, case folders, the marker; `remove()` deletes it. */
export class Scratch {
  readonly root: string;
  readonly secretDir: string;
  readonly casesDir: string;
  /** 11 characters, a valid network name, so a careless message would echo it anywhere a name goes. */
  readonly marker: string;

  constructor(prefix: string) {
    this.root = mkdtempSync(join(tmpdir(), prefix));
    this.secretDir = join(this.root, "secret");
    this.casesDir = join(this.root, "cases");
    this.marker = "zq" + randomBytes(5).toString("hex").slice(0, 9);
    mkdirSync(this.secretDir);
    mkdirSync(this.casesDir);
    for (const form of SECRET_FORMS) writeFileSync(this.secret(form), secretText(form, this.marker));
  }

  secret(form: SecretForm): string {
    return join(this.secretDir, `${form}.txt`);
  }

  /** Writes `site` as the case folder `name`; returns its path. */
  write(name: string, site: Site): string {
    const dir = join(this.casesDir, name);
    writeSite(site, dir, (form) => this.secret(form));
    return dir;
  }

  /** Environment of processes that load the cases: the marker is in it, for /proc/self/environ. */
  env(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
    return { ...process.env, NETFLEET_HOSTILE_MARKER: this.marker, ...extra };
  }

  /** Removes everything this run created (only the temporary folder). */
  remove(): void {
    rmSync(this.root, { recursive: true, force: true });
  }
}
