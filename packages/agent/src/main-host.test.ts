import { hostname } from "node:os";
import { describe, expect, it } from "vitest";
import { wrongHost } from "./main.ts";

// File mode's host check (netfleet-agent apply|run --assignment FILE). The effect at the target
// (nothing on the host changed) is proven in test/kernel (guest/suite.sh, backend.sh) and test/lab.
describe("file-mode host check", () => {
  it("refuses another host's document in one line naming both hosts and the flags", () => {
    expect(wrongHost("/srv/kbe.json", "kbe", "kvm1", false)).toBe(
      '"/srv/kbe.json" is the assignment of host kbe, and this host is kvm1 (--name); refused, nothing changed (--name kbe if this is kbe; --any-host applies another host\'s assignment on purpose)',
    );
  });

  it("control: this host's document, and any document with --any-host, pass", () => {
    expect(wrongHost("/srv/kvm1.json", "kvm1", "kvm1", false)).toBeUndefined();
    expect(wrongHost("/srv/kbe.json", "kbe", "kvm1", true)).toBeUndefined();
  });

  it("without --name the hostname (its first label) is this host's name", () => {
    const me = hostname().split(".")[0]!;
    expect(wrongHost("a.json", me, undefined, false)).toBeUndefined();
    expect(wrongHost("a.json", `${me}x`, undefined, false)).toMatch(new RegExp(`this host is ${me} \\(its hostname\\)`));
  });

  it("a file name with a newline or an escape sequence is printed escaped: it cannot forge a line", () => {
    const msg = wrongHost("x\n\u001b[2Jfake.json", "kbe", "kvm1", false)!;
    expect(msg.split("\n")).toHaveLength(1);
    expect(msg).not.toContain("\u001b");
    expect(msg).toContain('"x\\n\\u001b[2Jfake.json"');
  });

  it("--name must be a DNS label", () => {
    expect(wrongHost("a.json", "kbe", "kbe\nx", false)).toBe("--name must be a DNS label (this host's name in the inventory)");
  });
});
