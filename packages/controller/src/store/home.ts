import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { DNS_LABEL, generateSigningKeys, newJoinToken, signingKeyId } from "@netfleet/shared";
import { z } from "zod";
import { readJsonFile, writeSecretJson } from "./files.ts";

const Secrets = z.strictObject({
  site: z.string().regex(DNS_LABEL),
  controller: z.strictObject({ user: z.string(), password: z.string() }),
  enrollment: z.strictObject({
    enrollPassword: z.string(),
    token: z.string(),
    /** Earlier join tokens still accepted, each until `notAfter` (ISO): `netfleet keys rotate-enrollment`. */
    previous: z.array(z.strictObject({ enrollPassword: z.string(), token: z.string(), notAfter: z.iso.datetime({ offset: true }) })).optional(),
  }),
  signing: z.strictObject({ keyId: z.string(), privateKeyPem: z.string(), publicKeyPem: z.string() }),
  /**
   * Earlier signing keys agents still accept, each until `notAfter` (ISO),
   * public halves only: the private key of a replaced key is dropped at the
   * rotation (`netfleet keys rotate`), nothing is signed with it again.
   */
  signingPrevious: z.array(z.strictObject({ keyId: z.string(), publicKeyPem: z.string(), notAfter: z.iso.datetime({ offset: true }) })).optional(),
  /** The signing-key chain as published (shared signing.ts KeyAnnouncement, each signed by its predecessor), oldest first. */
  signingChain: z.array(z.looseObject({ seq: z.number().int(), keyId: z.string(), signerKeyId: z.string(), signature: z.string() })).optional(),
});
/**
 * The site's secrets (secrets.json): controller NATS user, join token and
 * enrollment password (and earlier ones in their overlap), signing key pair
 * (and earlier public keys in their overlap, and the key chain).
 */
export type ControllerSecrets = z.output<typeof Secrets>;

/**
 * The join tokens the controller accepts at `now` (ms): the current one
 * first, then earlier ones whose `notAfter` is still ahead, each with it.
 */
export function acceptedEnrollmentTokens(secrets: ControllerSecrets, now = Date.now()): { enrollPassword: string; token: string; notAfter?: string }[] {
  const { enrollPassword, token, previous = [] } = secrets.enrollment;
  return [{ enrollPassword, token }, ...previous.filter((p) => Date.parse(p.notAfter) > now)];
}

/** A file of the state dir that cannot be read, is not JSON, or does not fit its shape: `FILE: what is wrong` on one line. */
export class StateFileError extends Error {
  readonly file: string;
  constructor(file: string, problem: string, options?: ErrorOptions) {
    super(`${file}: ${problem}`, options);
    this.name = "StateFileError";
    this.file = file;
  }
}

/** What `netfleet serve` tells later commands: where NATS is and how the buckets were made. */
const Config = z.strictObject({
  site: z.string().regex(DNS_LABEL),
  inventory: z.string(),
  nats: z.array(z.string()).min(1),
  replicas: z.number().int().min(1).max(5),
  pid: z.number().int().optional(),
  startedAt: z.string().optional(),
});
/** What `netfleet serve` recorded (controller.json). */
export type ControllerConfig = z.output<typeof Config>;

/**
 * The controller's state directory (one site each; 0700, files 0600):
 * secrets.json (NATS controller password, join token, ed25519 signing key;
 * earlier tokens and keys in their overlap, the key chain),
 * controller.json (written by `netfleet serve`), credentials/ (one agent
 * password per host), nats/ (the nats-server nodes serve runs).
 */
export class ControllerHome {
  readonly dir: string;
  constructor(dir: string) {
    this.dir = dir;
  }

  /** One agent password file per host (CredentialStore). */
  get credentialsDir(): string {
    return join(this.dir, "credentials");
  }

  /** The nats-server nodes `serve` runs (configs, stores, logs). */
  get natsDir(): string {
    return join(this.dir, "nats");
  }

  /**
   * The site's secrets; created on first use when `site` is given and
   * `create` is not false (commands that only connect pass false, so a
   * wrong --state-dir is reported instead of filled). A state dir holds one site.
   * @throws Error "no controller state in DIR: ..." when there are none and none are made;
   *   StateFileError when secrets.json cannot be read or does not fit;
   *   Error when they belong to another site or their key id is wrong.
   */
  async secrets(site?: string, o: { create?: boolean } = {}): Promise<ControllerSecrets> {
    const secrets = await this.read("secrets.json", Secrets);
    if (secrets !== undefined) {
      if (site !== undefined && secrets.site !== site) throw new Error(`state dir ${this.dir} belongs to site ${secrets.site}, not ${site}; give each site its own --state-dir`);
      if (signingKeyId(secrets.signing.publicKeyPem) !== secrets.signing.keyId) throw new Error(`${join(this.dir, "secrets.json")}: signing key id does not match the key`);
      return secrets;
    }
    if (site === undefined || o.create === false) throw new Error(`no controller state in ${this.dir}: start netfleet serve <site-dir> --state-dir ${this.dir} first (or pass --state-dir)`);
    const made: ControllerSecrets = {
      site,
      controller: { user: "controller", password: randomBytes(24).toString("base64url") },
      enrollment: newJoinToken(),
      signing: generateSigningKeys(),
    };
    await this.write("secrets.json", made);
    return made;
  }

  /**
   * Replaces secrets.json (0600, written to a temp file and renamed: a
   * reader sees the old or the new secrets, never half). Checked first.
   * @throws ZodError for secrets that do not fit the file's shape; Error when the signing key id does not match the key.
   */
  async saveSecrets(secrets: ControllerSecrets): Promise<void> {
    const checked = Secrets.parse(secrets);
    if (signingKeyId(checked.signing.publicKeyPem) !== checked.signing.keyId) throw new Error(`${join(this.dir, "secrets.json")}: signing key id does not match the key`);
    await this.write("secrets.json", checked);
  }

  /**
   * What `netfleet serve` recorded, if it ran here.
   * @throws StateFileError when controller.json cannot be read or does not parse.
   */
  async config(): Promise<ControllerConfig | undefined> {
    return this.read("controller.json", Config);
  }

  /** Writes controller.json (0600, atomically). */
  saveConfig(config: ControllerConfig): Promise<void> {
    return this.write("controller.json", Config.parse(config));
  }

  /**
   * A state file parsed with `schema`; undefined when it does not exist.
   * @throws StateFileError (one line naming the file) when it cannot be read, is not JSON, or does not fit.
   */
  private async read<T>(name: string, schema: z.ZodType<T>): Promise<T | undefined> {
    const file = join(this.dir, name);
    let raw: unknown;
    try {
      raw = await readJsonFile(file);
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      throw new StateFileError(file, e instanceof SyntaxError ? `not valid JSON (${e.message})` : e.code ? `cannot read it (${e.code}: ${e.message})` : e.message, { cause: err });
    }
    if (raw === undefined) return undefined;
    const parsed = schema.safeParse(raw);
    if (!parsed.success) {
      const first = parsed.error.issues[0]!;
      const more = parsed.error.issues.length - 1;
      throw new StateFileError(file, `${first.path.join(".") || "(document)"}: ${first.message}${more > 0 ? ` (and ${more} more problem${more === 1 ? "" : "s"})` : ""}`);
    }
    return parsed.data;
  }

  private write(name: string, value: unknown): Promise<void> {
    return writeSecretJson(join(this.dir, name), value);
  }
}
