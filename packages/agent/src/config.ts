import { readFile, stat } from "node:fs/promises";
import { z } from "zod";
import { DNS_LABEL, isNatsUrl, LOG_LEVELS, parseJoinToken, parseMetricsListen } from "@netfleet/shared";

/** An absolute path of plain names (letters, digits, `_ . @ + -`): what may go into a host's config and the agent's argv. */
const ABSOLUTE_PATH = /^(?:\/[A-Za-z0-9_.@+-]+)+$/;

const dnsLabel = (want: string) => z.string({ error: want }).regex(DNS_LABEL, want);
const absolutePath = z.string({ error: "an absolute path" }).regex(ABSOLUTE_PATH, "an absolute path");

/**
 * The agent's config file (`/etc/netfleet/agent.json`, mode 0600, written by
 * `netfleet bootstrap` or copied into an image): what
 * `netfleet-agent run --site --nats --token-file [--name] [--state-dir] [--run-dir]`
 * takes, as one file (the bundle's `config-run FILE` runs it, see runConfig in
 * main.ts), so the token never appears on a command line.
 */
export const AgentConfigSchema = z.strictObject({
  site: dnsLabel("a DNS label"),
  nats: z.array(z.string().refine(isNatsUrl), { error: "a list of nats://host:port" }).min(1, "a list of nats://host:port"),
  /** A host token minted for this host (netfleet bootstrap, netfleet hosts token), or the site's join token `<id>.<secret>` (netfleet token). */
  token: z.string({ error: "the site's join token <id>.<secret>" }).superRefine((token, ctx) => {
    try {
      parseJoinToken(token);
    } catch (err) {
      ctx.addIssue({ code: "custom", message: (err as Error).message });
    }
  }),
  /** Name to enroll as; absent in images: the hostname's first label (or the management MAC) decides. */
  name: dnsLabel("a DNS label").optional(),
  /** Default /var/lib/netfleet-agent. */
  stateDir: absolutePath.optional(),
  /** Default /run/netfleet. */
  runDir: absolutePath.optional(),
  /**
   * Where to serve Prometheus metrics: `PORT` (on 127.0.0.1), `ADDRESS:PORT`
   * or `off`; default 127.0.0.1:9471 (metrics-options.ts). `--metrics` of run.
   */
  metrics: z
    .string({ error: "off, PORT or ADDRESS:PORT" })
    .refine((text) => {
      try {
        parseMetricsListen(text);
        return true;
      } catch {
        return false;
      }
    }, "off, PORT or ADDRESS:PORT (e.g. 127.0.0.1:9471)")
    .optional(),
  /** fatal, error, warn, info, debug, trace or silent; `--log-level` of run (so it beats NETFLEET_LOG_LEVEL). Default: NETFLEET_LOG_LEVEL, else info. */
  logLevel: z.enum(LOG_LEVELS, { error: `one of ${LOG_LEVELS.join(", ")}` }).optional(),
});

/** A valid agent config (AgentConfigSchema). */
export type AgentConfig = z.infer<typeof AgentConfigSchema>;

/** An agent config that is not valid; the message names the file and the field. */
export class AgentConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "AgentConfigError";
  }
}

/**
 * Validates a parsed agent config (`value`: JSON.parse of the file).
 * @throws AgentConfigError `<source>: <field>: <what it wants>` for the first
 *   field at fault (`unknown key` for a key it does not know), or
 *   `<source>: want a JSON object`.
 */
export function checkAgentConfig(value: unknown, source = "agent config"): AgentConfig {
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw new AgentConfigError(`${source}: want a JSON object`);
  const parsed = AgentConfigSchema.safeParse(value);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0]!;
  if (issue.code === "unrecognized_keys") throw new AgentConfigError(`${source}: ${issue.keys[0]}: unknown key`);
  const field = String(issue.path[0] ?? "");
  const message = field === "nats" ? "a list of nats://host:port" : issue.message;
  throw new AgentConfigError(`${source}: ${field}: ${message}`);
}

/**
 * The argv of `netfleet-agent run` for a config, without the token: that is
 * handed over in memory (runConfig in main.ts), never on a command line.
 */
export function runArgs(c: AgentConfig): string[] {
  return [
    "run",
    "--site",
    c.site,
    "--nats",
    c.nats.join(","),
    ...(c.name ? ["--name", c.name] : []),
    ...(c.stateDir ? ["--state-dir", c.stateDir] : []),
    ...(c.runDir ? ["--run-dir", c.runDir] : []),
    ...(c.metrics ? ["--metrics", c.metrics] : []),
    ...(c.logLevel ? ["--log-level", c.logLevel] : []),
  ];
}

/** The config file's text (checked first: a bad config is never written). */
export function renderConfig(c: AgentConfig): string {
  return JSON.stringify(checkAgentConfig(c), null, 2) + "\n";
}

/** The usage error of `--token <token>`, which the agent and `netfleet bootstrap` refuse. */
export const TOKEN_ON_ARGV =
  "--token is refused: a token on the command line is shown by ps to every local user; put it in a file (mode 0600) and give --token-file FILE, or pipe it in with --token-file -";

/** A token file is a line or two; anything bigger is not one (and is not read whole). */
const MAX_TOKEN_FILE = 64 * 1024;

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of process.stdin as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_TOKEN_FILE) throw new Error(`more than ${MAX_TOKEN_FILE} bytes on stdin; want one token`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString("utf8");
}

/**
 * The token of `--token-file SOURCE`: the file's text, or with `-` all of
 * stdin (read to its end), surrounding whitespace trimmed. Not checked
 * here (parseJoinToken does that).
 * @throws Error "empty" when there is nothing; the fs error (ENOENT, EACCES) of the file.
 */
export async function readToken(source: string): Promise<string> {
  const text = source === "-" ? await readStdin() : await readFile(source, "utf8");
  if (text.length > MAX_TOKEN_FILE) throw new Error(`more than ${MAX_TOKEN_FILE} bytes; want one token`);
  const token = text.trim();
  if (!token) throw new Error(source === "-" ? "stdin is empty; want the token" : "the file is empty; want the token");
  return token;
}

/**
 * A warning when the token file of `--token-file SOURCE` can be read by
 * users other than its owner (group or other read bit: every local user
 * in the group could enroll as this host with it); undefined when it is
 * private, when SOURCE is `-` (stdin), or when it cannot be stat'ed (the
 * read reports that).
 */
export async function tokenFileWarning(source: string): Promise<string | undefined> {
  if (source === "-") return undefined;
  const st = await stat(source).catch(() => undefined);
  if (!st || (st.mode & 0o044) === 0) return undefined;
  return `warning: ${source} is readable by other users (mode ${(st.mode & 0o777).toString(8).padStart(4, "0")}); keep a token file 0600 (chmod 600 ${source})`;
}
