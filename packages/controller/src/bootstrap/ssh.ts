import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { basename, dirname } from "node:path";
import ssh2 from "ssh2";
import type { ConnectConfig, SFTPWrapper, ServerHostKeyAlgorithm } from "ssh2";
import { appendKnownHost, checkHostKey, fingerprint, hostKeyName, knownKeyTypes, readKnownHosts, type HostKeyVerdict } from "./known-hosts.ts";
import { remoteCommand } from "./remote-command.ts";

const { Client, utils } = ssh2;

/** Why a host could not be bootstrapped, as one short word for JSON and a sentence for people. */
export type FailureKind =
  | "unreachable"
  | "authentication"
  | "host-key-changed"
  | "host-key-unknown"
  | "host-key-revoked"
  | "unsupported"
  | "not-root"
  | "missing-packages"
  | "missing-kernel-features"
  | "no-disk-space"
  | "remote-command"
  | "agent-not-running";

export class BootstrapError extends Error {
  readonly kind: FailureKind;
  constructor(kind: FailureKind, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "BootstrapError";
    this.kind = kind;
  }
}

export interface SshOptions {
  /** Address to connect to (the inventory's address, else the host name). */
  address: string;
  /** Inventory name: also looked up in known_hosts. */
  name: string;
  port: number;
  user: string;
  /** A parsed private key, or the ssh-agent socket. */
  auth: { privateKey: Buffer; identityFile: string } | { agent: string };
  knownHostsFile: string;
  acceptNew: boolean;
  readyTimeoutMs?: number;
}

export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Reads an OpenSSH/PEM private key; a passphrase-protected one needs ssh-agent. */
export function loadIdentity(file: string): Buffer {
  let data: Buffer;
  try {
    data = readFileSync(file);
  } catch (err) {
    throw new Error(`cannot read identity ${file}: ${(err as Error).message}`);
  }
  const key = utils.parseKey(data);
  if (key instanceof Error) {
    const hint = /encrypted|passphrase/i.test(key.message) ? " (passphrase-protected: load it into ssh-agent and leave out --identity)" : "";
    throw new Error(`cannot use identity ${file}: ${key.message}${hint}`);
  }
  return data;
}

const RSA_ALGOS: ServerHostKeyAlgorithm[] = ["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"];
const DEFAULT_ALGOS: ServerHostKeyAlgorithm[] = ["ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521", ...RSA_ALGOS];

/** Host key algorithms with the types known_hosts already holds for this host first, so a known host is checked against its recorded key. */
function hostKeyAlgorithms(knownTypes: readonly string[]): ServerHostKeyAlgorithm[] {
  const first = knownTypes.flatMap((t) => (t === "ssh-rsa" ? RSA_ALGOS : DEFAULT_ALGOS.filter((a) => a === t)));
  return [...new Set([...first, ...DEFAULT_ALGOS])];
}

/** One SSH connection: argv commands (quoted by remoteCommand) and SFTP. */
export class SshSession {
  readonly serverVersion: string;
  readonly hostKey: { fingerprint: string; recorded: boolean };
  private readonly client: InstanceType<typeof Client>;
  private sftpChannel: SFTPWrapper | undefined;

  private constructor(client: InstanceType<typeof Client>, serverVersion: string, hostKey: { fingerprint: string; recorded: boolean }) {
    this.client = client;
    this.serverVersion = serverVersion;
    this.hostKey = hostKey;
  }

  static connect(o: SshOptions): Promise<SshSession> {
    const names = [...new Set([hostKeyName(o.address, o.port), hostKeyName(o.name, o.port)])];
    const known = readKnownHosts(o.knownHostsFile);
    let verdict: HostKeyVerdict | undefined;
    let offered: Buffer | undefined;
    const client = new Client();
    const config: ConnectConfig = {
      host: o.address,
      port: o.port,
      username: o.user,
      readyTimeout: o.readyTimeoutMs ?? 20_000,
      keepaliveInterval: 10_000,
      algorithms: { serverHostKey: hostKeyAlgorithms(knownKeyTypes(known.entries, names)) },
      hostVerifier: (key: Buffer) => {
        offered = key;
        verdict = checkHostKey(known.entries, names, key);
        return verdict.kind === "known" || (verdict.kind === "unknown" && o.acceptNew);
      },
      ...("agent" in o.auth ? { agent: o.auth.agent } : { privateKey: o.auth.privateKey }),
    };
    return new Promise((resolve, reject) => {
      let settled = false;
      const fail = (err: Error) => {
        if (settled) return;
        settled = true;
        client.end();
        reject(classifyConnectError(err, o, verdict, offered));
      };
      client.once("error", fail);
      client.once("close", () => fail(new Error("connection closed during the handshake")));
      client.once("ready", () => {
        if (settled) return;
        settled = true;
        let recorded = false;
        if (verdict?.kind === "unknown" && offered) {
          appendKnownHost(o.knownHostsFile, hostKeyName(o.address, o.port), offered);
          recorded = true;
        }
        client.removeAllListeners("error");
        client.on("error", () => {});
        const version = (client as unknown as { _remoteVer?: string })._remoteVer ?? "";
        resolve(new SshSession(client, version, { fingerprint: offered ? fingerprint(offered) : "?", recorded }));
      });
      client.connect(config);
    });
  }

  /** Runs argv on the host (quoted by remoteCommand); never throws for a non-zero exit. */
  exec(argv: readonly string[], timeoutMs = 60_000): Promise<ExecResult> {
    const command = remoteCommand(argv);
    return new Promise((resolve, reject) => {
      this.client.exec(command, (err, stream) => {
        if (err) return reject(new BootstrapError("remote-command", `${argv[0]}: ${err.message}`, { cause: err }));
        const out: Buffer[] = [];
        const errs: Buffer[] = [];
        const timer = setTimeout(() => {
          stream.close();
          reject(new BootstrapError("remote-command", `${argv.join(" ")}: no answer within ${timeoutMs / 1000} s`));
        }, timeoutMs);
        stream.on("data", (d: Buffer) => out.push(d));
        stream.stderr.on("data", (d: Buffer) => errs.push(d));
        stream.on("close", (code: number | null, signal?: string) => {
          clearTimeout(timer);
          resolve({ code: code ?? (signal ? 128 : 255), stdout: Buffer.concat(out).toString("utf8"), stderr: Buffer.concat(errs).toString("utf8") });
        });
      });
    });
  }

  /** Like exec, but a non-zero exit is a BootstrapError carrying its stderr. */
  async run(argv: readonly string[], timeoutMs?: number): Promise<string> {
    const r = await this.exec(argv, timeoutMs);
    if (r.code !== 0) throw new BootstrapError("remote-command", `${argv.join(" ")} exited ${r.code}: ${(r.stderr || r.stdout).trim().split("\n").slice(-3).join("; ")}`);
    return r.stdout;
  }

  private sftp(): Promise<SFTPWrapper> {
    if (this.sftpChannel) return Promise.resolve(this.sftpChannel);
    return new Promise((resolve, reject) => {
      this.client.sftp((err, sftp) => {
        if (err) return reject(new BootstrapError("remote-command", `sftp: ${err.message}`, { cause: err }));
        this.sftpChannel = sftp;
        resolve(sftp);
      });
    });
  }

  /** The file's content, or undefined when it does not exist. */
  async readFile(path: string): Promise<Buffer | undefined> {
    const sftp = await this.sftp();
    return new Promise((resolve, reject) => {
      sftp.readFile(path, (err: (Error & { code?: number }) | null | undefined, data: Buffer) => {
        if (err) return err.code === 2 ? resolve(undefined) : reject(new BootstrapError("remote-command", `reading ${path}: ${err.message}`, { cause: err }));
        resolve(data);
      });
    });
  }

  /** Whether `path` is a symbolic link (SFTP lstat: the link itself, not followed); false when absent. */
  async isSymlink(path: string): Promise<boolean> {
    const sftp = await this.sftp();
    return new Promise((resolve, reject) => {
      sftp.lstat(path, (err: (Error & { code?: number }) | undefined, stats) => {
        if (!err) return resolve(stats.isSymbolicLink());
        if (err.code === 2) return resolve(false);
        reject(new BootstrapError("remote-command", `lstat ${path}: ${err.message}`, { cause: err }));
      });
    });
  }

  async exists(path: string): Promise<boolean> {
    const sftp = await this.sftp();
    return new Promise((resolve, reject) => {
      sftp.stat(path, (err: (Error & { code?: number }) | undefined) => {
        if (!err) return resolve(true);
        if (err.code === 2) return resolve(false);
        reject(new BootstrapError("remote-command", `stat ${path}: ${err.message}`, { cause: err }));
      });
    });
  }

  /**
   * Writes `data` (or uploads the local file) to `path` over SFTP, never
   * through a command line (a secret travels only inside the SSH channel):
   * a temp file beside it of a random name, opened with SSH_FXF_CREAT|
   * SSH_FXF_EXCL (flag "wx"; OpenSSH's sftp-server opens it with
   * O_CREAT|O_EXCL, open(2): a stale file or a symlink at that name fails
   * instead of being written through), created with `mode` and fchmod'ed to
   * it before a byte is written, fsync'ed (fsync@openssh.com, when offered),
   * then renamed over `path` (posix-rename@openssh.com: rename(2) replaces
   * a link at `path`, never follows it). Readers never see half a file; the
   * temp file is removed on failure.
   * @throws BootstrapError "no-disk-space" on SSH_FX_FAILURE of a write (what a full disk gives), else "remote-command".
   */
  async install(path: string, source: { data: Buffer } | { localFile: string; onProgress?: (done: number, total: number) => void }, mode: number): Promise<void> {
    const sftp = await this.sftp();
    const tmp = `${dirname(path)}/.${basename(path)}.${randomBytes(6).toString("hex")}.tmp`;
    const step = <T>(what: string, fn: (cb: (err: Error | null | undefined, value?: T) => void) => void) =>
      new Promise<T>((resolve, reject) =>
        fn((err, value) => {
          if (!err) return resolve(value as T);
          const code = (err as Error & { code?: number }).code;
          reject(new BootstrapError(code === 4 ? "no-disk-space" : "remote-command", `${what} ${path}: ${err.message}${code === 4 ? " (the disk may be full)" : ""}`, { cause: err }));
        }),
      );
    const handle = await step<Buffer>("creating a temp file for", (cb) => sftp.open(tmp, "wx", { mode }, cb));
    try {
      try {
        await step("chmod", (cb) => sftp.fchmod(handle, mode, cb));
        if ("data" in source) {
          const data = source.data;
          if (data.length > 0) await step("writing", (cb) => sftp.write(handle, data, 0, data.length, 0, cb));
          if (this.offersFsync()) await step("fsync", (cb) => sftp.ext_openssh_fsync(handle, cb));
        }
      } finally {
        await step("closing", (cb) => sftp.close(handle, cb));
      }
      if ("localFile" in source) {
        const progress = source.onProgress;
        // Into the file made above (fastPut opens it with "w": it is ours, 0600 or `mode` already).
        await step("uploading", (cb) => sftp.fastPut(source.localFile, tmp, { mode, ...(progress ? { step: (done: number, _chunk: number, total: number) => progress(done, total) } : {}) }, cb));
      }
      await step("renaming", (cb) => sftp.ext_openssh_rename(tmp, path, cb));
    } catch (err) {
      await new Promise<void>((resolve) => sftp.unlink(tmp, () => resolve()));
      throw err;
    }
  }

  /** Whether the server offers fsync@openssh.com (ssh2 keeps the extensions the server announced). */
  private offersFsync(): boolean {
    return (this.sftpChannel as unknown as { _extensions?: Record<string, string> } | undefined)?._extensions?.["fsync@openssh.com"] === "1";
  }

  close(): void {
    this.sftpChannel?.end();
    this.client.end();
  }
}

function classifyConnectError(err: Error & { level?: string; code?: string }, o: SshOptions, verdict: HostKeyVerdict | undefined, offered: Buffer | undefined): BootstrapError {
  const where = `${o.user}@${o.address}:${o.port}`;
  if (verdict && offered && verdict.kind !== "known") {
    const fp = fingerprint(offered);
    if (verdict.kind === "changed") {
      return new BootstrapError(
        "host-key-changed",
        `host key changed: ${o.knownHostsFile}:${verdict.line} records ${verdict.keyType} ${verdict.knownFingerprint}, the host now offers ${fp}. Refused: if the host was reinstalled, remove the old entry (ssh-keygen -R ${hostKeyName(o.address, o.port)} -f ${o.knownHostsFile}) and run again`,
      );
    }
    if (verdict.kind === "revoked") return new BootstrapError("host-key-revoked", `host key ${fp} is marked @revoked in ${o.knownHostsFile}:${verdict.line}`);
    if (verdict.kind === "unknown" && !o.acceptNew) {
      return new BootstrapError("host-key-unknown", `unknown host key ${fp} (not in ${o.knownHostsFile}); check it and run again with --accept-new to record it`);
    }
  }
  if (err.level === "client-authentication") {
    const key = "identityFile" in o.auth ? `key ${o.auth.identityFile}` : "the keys of ssh-agent";
    return new BootstrapError("authentication", `authentication failed: ${where} did not accept ${key}`);
  }
  if (err.level === "client-timeout") return new BootstrapError("unreachable", `unreachable: no SSH handshake with ${where} within ${(o.readyTimeoutMs ?? 20_000) / 1000} s`);
  if (err.code && /^(ECONNREFUSED|EHOSTUNREACH|ENETUNREACH|ETIMEDOUT|ENOTFOUND|EAI_AGAIN|ECONNRESET)$/.test(err.code)) {
    return new BootstrapError("unreachable", `unreachable: ${where}: ${err.code === "ECONNREFUSED" ? "connection refused (is sshd running?)" : err.message}`);
  }
  return new BootstrapError("unreachable", `${where}: ${err.message}`, { cause: err });
}
