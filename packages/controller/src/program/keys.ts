import type { Command } from "commander";
import { withExitCode } from "@netfleet/shared/cli";
import type { Connected } from "../commands/connect.ts";
import type { CommandOutput } from "../output.ts";
import { withController } from "./control.ts";
import { checked, jsonOption, natsOption, stateDirOption, type Context } from "./options.ts";

/** Options of the keys commands. */
interface KeysFlags {
  stateDir?: string;
  nats?: string;
  json?: boolean;
  overlap?: string;
}

/** Loads the site folder when given (its problems printed: EXIT_INVALID), then connects as the controller (withController), runs `use`, closes. */
async function withControl(cmd: Command, o: KeysFlags, dir: string | undefined, out: CommandOutput, use: (c: Connected) => Promise<number>): Promise<number> {
  let inventory;
  if (dir !== undefined) {
    const { EXIT_INVALID, loadOrReport } = await import("../commands/validate.ts");
    inventory = loadOrReport(dir, out);
    if (!inventory) return EXIT_INVALID;
  }
  return withController(cmd, o, inventory, use);
}

/**
 * `netfleet keys`: rotation of the controller's signing key (rotate,
 * retire, publish) and of the site's join token (rotate-enrollment).
 */
export function addKeysCommands(program: Command, ctx: Context): void {
  const keys = program
    .command("keys")
    .summary("Rotate the controller's signing key or the site's join token without re-enrolling hosts.")
    .description(
      "Rotate the controller's signing key (rotate, then retire) or the site's join token (rotate-enrollment). " +
        "Agents learn a new signing key from a chain in the desired bucket, each link signed by the key before it; " +
        "they accept the old key until the overlap ends or keys retire runs.",
    );

  const overlapOption = (what: string) => ["--overlap <duration>", `${what}: 90s, 15m, 24h, 7d; 0s refuses it at once (default 24h)`] as const;

  keys
    .command("rotate")
    .description("Sign with a new key from now on: announce it signed by the current key, re-sign every host's desired state; agents accept the old key until --overlap ends.")
    .argument("[site-dir]", "the site folder")
    .option(...overlapOption("how long agents still accept the old key"))
    .addOption(stateDirOption())
    .addOption(natsOption())
    .addOption(jsonOption())
    .action(withExitCode(async (dir: string | undefined, o: KeysFlags, cmd: Command) => {
      const { DEFAULT_OVERLAP_MS, parseOverlap, printKeyChange, rotateSigningKey } = await import("../commands/keys.ts");
      const overlapMs = o.overlap === undefined ? DEFAULT_OVERLAP_MS : checked(cmd, () => parseOverlap(o.overlap!));
      const out = ctx.output(o.json ?? false);
      return withControl(cmd, o, dir, out, async ({ cp, home }) => printKeyChange("rotate", await rotateSigningKey(home, cp, { overlapMs }), out));
    }));

  keys
    .command("retire")
    .description("Make agents refuse every earlier signing key now, whatever its overlap (one retirement link each, signed by the current key).")
    .argument("[site-dir]", "the site folder")
    .addOption(stateDirOption())
    .addOption(natsOption())
    .addOption(jsonOption())
    .action(withExitCode(async (dir: string | undefined, o: KeysFlags, cmd: Command) => {
      const { printKeyChange, retireSigningKeys } = await import("../commands/keys.ts");
      const out = ctx.output(o.json ?? false);
      return withControl(cmd, o, dir, out, async ({ cp, home }) => printKeyChange("retire", await retireSigningKeys(home, cp), out));
    }));

  keys
    .command("publish")
    .description("Publish the key chain again and re-sign desired states signed by an earlier key (finishes a rotate or retire that failed half-way).")
    .argument("[site-dir]", "the site folder")
    .addOption(stateDirOption())
    .addOption(natsOption())
    .addOption(jsonOption())
    .action(withExitCode(async (dir: string | undefined, o: KeysFlags, cmd: Command) => {
      const { republishKeys } = await import("../commands/keys.ts");
      const out = ctx.output(o.json ?? false);
      return withControl(cmd, o, dir, out, async ({ cp, home }) => {
        const { secrets, chainRevision, resigned } = await republishKeys(home, cp);
        const failed = resigned.filter((r) => r.error !== undefined);
        if (out.json) out.emit({ action: "publish", site: secrets.site, keyId: secrets.signing.keyId, chainLength: secrets.signingChain?.length ?? 0, chainRevision, resigned });
        else {
          out.line(`site ${secrets.site}: signing key ${secrets.signing.keyId}; key chain of ${secrets.signingChain?.length ?? 0} link(s) published (KV revision ${chainRevision})`);
          out.line(`desired states re-signed: ${resigned.length - failed.length}${failed.length ? `, ${failed.length} not` : ""}`);
          for (const f of failed) out.error(`${f.host}: ${f.error}`);
        }
        return failed.length ? 1 : 0;
      });
    }));

  keys
    .command("rotate-enrollment")
    .description("Make a new join token; the current one is still accepted until --overlap ends, then refused. Enrolled hosts are not affected.")
    .argument("[site-dir]", "the site folder (checks it is this state dir's site)")
    .option(...overlapOption("how long the current token is still accepted"))
    .addOption(stateDirOption())
    .addOption(jsonOption())
    .action(withExitCode(async (dir: string | undefined, o: KeysFlags, cmd: Command) => {
      const [{ DEFAULT_OVERLAP_MS, parseOverlap, rotateEnrollment }, { ControllerHome }, { stateDirOf }] = await Promise.all([
        import("../commands/keys.ts"),
        import("../store/home.ts"),
        import("../commands/connect.ts"),
      ]);
      const overlapMs = o.overlap === undefined ? DEFAULT_OVERLAP_MS : checked(cmd, () => parseOverlap(o.overlap!));
      const out = ctx.output(o.json ?? false);
      const home = new ControllerHome(stateDirOf(o.stateDir));
      if (dir !== undefined) {
        const { EXIT_INVALID, loadOrReport } = await import("../commands/validate.ts");
        const inventory = loadOrReport(dir, out);
        if (!inventory) return EXIT_INVALID;
        await home.secrets(inventory.site.name, { create: false });
      }
      const r = await rotateEnrollment(home, { overlapMs });
      if (out.json) out.emit({ action: "rotate-enrollment", site: r.site, token: r.token, previous: r.previous.map((p) => ({ notAfter: p.notAfter })) });
      else {
        out.line(r.token);
        for (const p of r.previous) out.error(`the previous join token is accepted until ${p.notAfter}`);
      }
      return 0;
    }));
}
