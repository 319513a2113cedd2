import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync, lstatSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { generateSigningKeys, sealAssignment, signAssignment, type SignedAssignment } from "@netfleet/shared";
import { AgentState, PENDING_FILE } from "./state.ts";

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "nf-state-"));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const keys = generateSigningKeys();
function envelope(revision: number): SignedAssignment {
  const doc = sealAssignment({ apiVersion: "netfleet.dev/v1", kind: "HostAssignment", site: "lab", host: "hv1", role: "vmhost", resources: [{ kind: "sysctl", name: "net.x", value: String(revision) }] });
  return signAssignment(doc, revision, keys.privateKeyPem);
}

describe("AgentState pending marker (pending.json)", () => {
  it("marks a revision being applied; pending only while newer than the confirmed and the undone one; never written into the checkpoint", async () => {
    const state = new AgentState(dir);
    const one = envelope(1);
    await state.saveCheckpoint({ current: one });
    const two = envelope(2);
    state.markPending({ revision: 2, hash: two.assignment.hash });
    expect(statSync(join(dir, PENDING_FILE)).mode & 0o777).toBe(0o600);
    expect((await state.checkpoint()).pending).toEqual({ revision: 2, hash: two.assignment.hash });
    // Confirmed: the checkpoint moves, the marker stays and is settled.
    await state.saveCheckpoint({ previous: one, current: two, pending: { revision: 2, hash: two.assignment.hash } });
    expect((await state.checkpoint()).pending).toBeUndefined();
    expect(JSON.parse(readFileSync(join(dir, "checkpoint.json"), "utf8"))).not.toHaveProperty("pending");
    // Undone by lockout protection: settled too.
    const three = envelope(3);
    state.markPending({ revision: 3, hash: three.assignment.hash });
    expect((await state.checkpoint()).pending?.revision).toBe(3);
    await state.saveCheckpoint({ previous: one, current: two, rolledBack: { revision: 3, hash: three.assignment.hash } });
    expect((await state.checkpoint()).pending).toBeUndefined();
    state.clearPendingMark();
    state.clearPendingMark();
    expect(state.pendingMark()).toBeUndefined();
  });

  it("writes one fixed-size record in place: a shorter marker leaves no tail of the longer one, a longer file is cut, an oversized marker is refused", async () => {
    const state = new AgentState(dir);
    const file = join(dir, PENDING_FILE);
    state.markPending({ revision: 123456789, hash: "h".repeat(100) });
    state.markPending({ revision: 7, hash: "x" });
    expect(statSync(file).size).toBe(256);
    expect(state.pendingMark()).toEqual({ mark: { revision: 7, hash: "x" } });
    writeFileSync(file, JSON.stringify({ revision: 1, hash: "y" }).padEnd(1000, "z"));
    expect(state.pendingMark()).toEqual({ ignored: "is not JSON" });
    state.markPending({ revision: 8, hash: "x" });
    expect(statSync(file).size).toBe(256);
    expect(state.pendingMark()).toEqual({ mark: { revision: 8, hash: "x" } });
    expect(() => state.markPending({ revision: 9, hash: "é".repeat(120) })).toThrow(/does not fit/);
    expect(state.pendingMark()).toEqual({ mark: { revision: 8, hash: "x" } });
  });

  it("reads the pending envelope an earlier agent kept in the checkpoint itself", async () => {
    const one = envelope(1);
    const two = envelope(2);
    writeFileSync(join(dir, "checkpoint.json"), JSON.stringify({ current: one, pending: two }), { mode: 0o600 });
    expect((await new AgentState(dir).checkpoint()).pending).toEqual({ revision: 2, hash: two.assignment.hash });
  });

  it("ignores garbage, never follows a symlink, never waits on a FIFO", async () => {
    const state = new AgentState(dir);
    const file = join(dir, PENDING_FILE);
    writeFileSync(file, "{not json");
    expect(state.pendingMark()).toEqual({ ignored: "is not JSON" });
    expect((await state.checkpoint()).pending).toBeUndefined();
    writeFileSync(file, JSON.stringify({ revision: -1, hash: "x" }));
    expect(state.pendingMark()).toEqual({ ignored: "is not a {revision, hash} marker" });
    writeFileSync(file, " ".repeat(5000));
    expect(state.pendingMark()).toMatchObject({ ignored: expect.stringContaining("5000 bytes") });
    rmSync(file);

    // A link to a valid marker elsewhere: neither read nor written through.
    const target = join(dir, "elsewhere.json");
    writeFileSync(target, JSON.stringify({ revision: 9, hash: "h" }));
    symlinkSync(target, file);
    expect(state.pendingMark()).toEqual({ ignored: "is a symbolic link (not followed)" });
    expect((await state.checkpoint()).pending).toBeUndefined();
    expect(() => state.markPending({ revision: 10, hash: "h" })).toThrow(/ELOOP|symbolic/);
    expect(JSON.parse(readFileSync(target, "utf8"))).toEqual({ revision: 9, hash: "h" });
    state.clearPendingMark();
    expect(lstatSync(target).isFile()).toBe(true);
    expect(state.pendingMark()).toBeUndefined();

    // A FIFO with no one at the other end: neither read nor written, and nothing blocks.
    execFileSync("mkfifo", ["-m", "600", file]);
    expect(state.pendingMark()).toEqual({ ignored: "is not a regular file" });
    expect(() => state.markPending({ revision: 10, hash: "h" })).toThrow(/ENXIO|regular/);
    state.clearPendingMark();
    expect(state.pendingMark()).toBeUndefined();
  });
});
