/**
 * `npm run package`: builds the Debian packages of netfleet into dist/
 * (git-ignored):
 *
 *   netfleet-node_<node version>_<arch>.deb   the Node both run on (/usr/lib/netfleet-node)
 *   netfleet-agent_<version>_all.deb          the agent: bundle, unit, CLI (Depends: netfleet-node)
 *   netfleet_<version>_<arch>.deb             the controller: CLI, serve's unit, its user (Depends: netfleet-node, nats-server)
 *
 * Why a Node of our own: netfleet needs Node >= 22.18 (the controller runs
 * its TypeScript with Node's type stripping; the agent bundle targets
 * node22), and Debian's nodejs is 18 in bookworm and 20 in trixie, so
 * `Depends: nodejs (>= 22)` could not be met from Debian itself. The Node
 * we build and test with is packaged once, for both (bootstrap likewise
 * ships /opt/netfleet/node where a host has no Node >= 22).
 *
 *   sh scripts/node.sh packaging/deb/build.ts [--out DIR] [--version V] [--node PATH] [--compress gzip|xz|zstd] [--lintian] [--json]
 *
 * Exit 0 with one line per package (or the JSON document), 1 with one line
 * naming what failed.
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { isAbsolute, join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { buildAgentBundle } from "../../packages/controller/src/bootstrap/bundle.ts";
import { buildDeb, type BuiltDeb, type Compression } from "./deb.ts";
import { lintian } from "./lintian.ts";
import { NODE_MIN, checkNode, nodeDepends } from "./node.ts";
import { LAYOUT, REPO, stageAgent, stageController, stageNode } from "./stage.ts";

const HELP = `usage: npm run package -- [options]
   or: sh scripts/node.sh packaging/deb/build.ts [options]

Builds the Debian packages netfleet-node, netfleet-agent and netfleet (dpkg-deb).

options:
  --out DIR       where the .deb files go (default: dist/ of the repository)
  --version V     the packages' version (default: package.json's, ${JSON.parse(readFileSync(join(REPO, "package.json"), "utf8")).version})
  --node PATH     the Node to package (default: this one if it is an official build >= 22.18, else .tools/node/bin/node)
  --compress C    gzip (default), xz (smaller, much slower) or zstd (fastest; lintian 2.116 refuses it)
  --lintian       run lintian on each package; any error or warning fails the build
  --json          print one JSON document instead of lines
  -h, --help      this text
`;

interface Report {
  out: string;
  node: { path: string; version: string };
  packages: (BuiltDeb & { lintian?: string[] })[];
}

async function build(argv: string[]): Promise<Report | "help"> {
  const { values } = parseArgs({
    args: argv,
    options: { out: { type: "string" }, version: { type: "string" }, node: { type: "string" }, compress: { type: "string" }, lintian: { type: "boolean" }, json: { type: "boolean" }, help: { type: "boolean", short: "h" } },
    strict: true,
  });
  if (values.help) return "help";
  const version = values.version ?? (JSON.parse(readFileSync(join(REPO, "package.json"), "utf8")) as { version: string }).version;
  if (!/^[0-9][A-Za-z0-9.+~]*$/.test(version)) throw new Error(`--version ${JSON.stringify(version)}: want digits first, then letters, digits, . + ~`);
  const compression = (values.compress ?? "gzip") as Compression;
  if (!["gzip", "xz", "zstd"].includes(compression)) throw new Error(`--compress ${JSON.stringify(values.compress)}: want gzip, xz or zstd`);
  const out = resolve(values.out ?? join(REPO, "dist"));
  for (const tool of ["dpkg-deb", "dpkg-shlibdeps"]) {
    try {
      execFileSync(tool, ["--version"], { stdio: "ignore" });
    } catch {
      throw new Error(`${tool} is not installed (Debian package ${tool === "dpkg-deb" ? "dpkg" : "dpkg-dev"})`);
    }
  }
  const defaultNode = join(REPO, ".tools", "node", "bin", "node");
  const candidates = values.node ? [values.node] : [process.execPath, defaultNode].filter((p) => existsSync(p));
  const node = checkNode(candidates);
  if (values.node && !isAbsolute(values.node)) throw new Error(`--node ${values.node}: want an absolute path`);
  const arch = execFileSync("dpkg", ["--print-architecture"], { encoding: "utf8" }).trim();
  mkdirSync(out, { recursive: true });
  const work = mkdtempSync(join(out, ".build-"));
  const built: Report["packages"] = [];
  try {
    const nodeRoot = join(work, "netfleet-node");
    stageNode(nodeRoot, node.path, node.version);
    built.push(
      buildDeb(
        nodeRoot,
        {
          name: "netfleet-node",
          version: node.version,
          architecture: arch,
          section: "admin",
          depends: nodeDepends(node.path),
          summary: "Node.js runtime of netfleet",
          description: `Node.js ${node.version}, installed as ${LAYOUT.node} for netfleet's agent and controller only: netfleet needs Node 22.18 or later, newer than the nodejs of Debian 12 and 13. It is not on PATH and does not conflict with the nodejs package.`,
        },
        {},
        out,
        compression,
      ),
    );
    const agentRoot = join(work, "netfleet-agent");
    stageAgent(agentRoot, (await buildAgentBundle()).code, version);
    built.push(
      buildDeb(
        agentRoot,
        {
          name: "netfleet-agent",
          version,
          architecture: "all",
          section: "net",
          depends: [`netfleet-node (>= ${NODE_MIN.join(".")})`, "openvswitch-switch", "iproute2", "nftables", "dnsmasq-base", "procps"],
          recommends: ["libvirt-daemon-system | libvirt-daemon", "libvirt-clients", "tcpdump", "iputils-ping"],
          summary: "netfleet host agent: keeps a hypervisor's virtual networks converged",
          description:
            "The netfleet agent enrolls with its site's controller over NATS and keeps this host's Open vSwitch bridges, bonds, VLAN interfaces, VM port security flows, libvirt networks and, on a backend, the gateway (nftables, dnsmasq) as the site's inventory says.\n\nConfigure /etc/netfleet/agent.json (site, NATS URLs, the host's token; mode 0600), then: systemctl start netfleet-agent. libvirt is recommended, not required: only VM hosts need it.",
        },
        { scripts: scripts("netfleet-agent") },
        out,
        compression,
      ),
    );
    const ctlRoot = join(work, "netfleet");
    stageController(ctlRoot, version);
    built.push(
      buildDeb(
        ctlRoot,
        {
          name: "netfleet",
          version,
          architecture: arch,
          section: "admin",
          depends: [`netfleet-node (>= ${NODE_MIN.join(".")})`, "nats-server", "systemd"],
          summary: "fleet manager for KVM/libvirt virtual networks (controller, CLI)",
          description:
            "netfleet compiles a site's inventory into per-host assignments and rolls them out to the hosts' agents (package netfleet-agent) over NATS. This package has the netfleet command line and netfleet-serve.service: netfleet serve with its own nats-server (JetStream), as the system user netfleet, state in /var/lib/netfleet.\n\nSet NETFLEET_SITE in /etc/netfleet/serve.env, then: systemctl start netfleet-serve.",
        },
        { conffiles: [LAYOUT.serveEnv], scripts: scripts("netfleet") },
        out,
        compression,
      ),
    );
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  if (values.lintian) {
    for (const p of built) {
      p.lintian = lintian(p.file);
      if (p.lintian.length) throw new Error(`lintian ${p.file}:\n${p.lintian.join("\n")}`);
    }
  }
  return { out, node, packages: built };
}

function scripts(pkg: string) {
  const dir = join(REPO, "packaging", "deb", "scripts", pkg);
  return { postinst: join(dir, "postinst"), prerm: join(dir, "prerm"), postrm: join(dir, "postrm") };
}

const argv = process.argv.slice(2);
try {
  const r = await build(argv);
  if (r === "help") process.stdout.write(HELP);
  else if (argv.includes("--json")) process.stdout.write(JSON.stringify(r, null, 2) + "\n");
  else {
    for (const p of r.packages) process.stdout.write(`${p.file}  ${(p.bytes / 1048576).toFixed(1)} MiB  installed ${(p.installedKiB / 1024).toFixed(1)} MiB  ${(p.ms / 1000).toFixed(1)} s${p.lintian ? "  lintian clean" : ""}\n`);
  }
} catch (err) {
  const message = err instanceof Error ? err.message : String(err);
  if (argv.includes("--json")) process.stdout.write(JSON.stringify({ error: message }) + "\n");
  else process.stderr.write(`netfleet package: ${message}\n`);
  process.exitCode = 1;
}
