import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, symlinkSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { sealAssignment } from "@netfleet/shared";
import { ASSIGNMENT_MAX_BYTES, AssignmentFileError, readAssignment } from "./file-mode.ts";

const dir = mkdtempSync(join(tmpdir(), "nf-assignment-file-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("readAssignment: only a regular file of bounded size", () => {
  it("a FIFO is refused at once (no hang), naming the file", () => {
    const fifo = join(dir, "fifo.json");
    execFileSync("mkfifo", [fifo]);
    const started = performance.now();
    expect(() => readAssignment(fifo)).toThrow(new AssignmentFileError(`cannot read assignment ${fifo}: not a regular file (a FIFO)`));
    expect(performance.now() - started).toBeLessThan(1000);
  });

  it("a link to /dev/zero is refused without reading it; a file over the cap too", () => {
    const zero = join(dir, "zero.json");
    symlinkSync("/dev/zero", zero);
    expect(() => readAssignment(zero)).toThrow(`cannot read assignment ${zero}: not a regular file (a character device)`);
    const big = join(dir, "big.json");
    writeFileSync(big, "");
    truncateSync(big, ASSIGNMENT_MAX_BYTES + 1);
    expect(() => readAssignment(big)).toThrow(`cannot read assignment ${big}: it is ${ASSIGNMENT_MAX_BYTES + 1} bytes, more than the ${ASSIGNMENT_MAX_BYTES} an assignment may hold`);
  });

  it("control: a compiled assignment reads, also through a link; a missing file and a folder say so", () => {
    const doc = sealAssignment({ apiVersion: "netfleet.dev/v1", kind: "HostAssignment", site: "lab", host: "hv1", role: "vmhost", resources: [{ kind: "sysctl", name: "net.ipv4.ip_forward", value: "1" }] });
    const file = join(dir, "hv1.json");
    writeFileSync(file, JSON.stringify(doc));
    expect(readAssignment(file).hash).toBe(doc.hash);
    symlinkSync(file, join(dir, "link.json"));
    expect(readAssignment(join(dir, "link.json")).hash).toBe(doc.hash);
    expect(() => readAssignment(join(dir, "none.json"))).toThrow(/: no such file \(ENOENT\)$/);
    expect(() => readAssignment(dir)).toThrow(/: it is a folder \(EISDIR\)$/);
  });
});
