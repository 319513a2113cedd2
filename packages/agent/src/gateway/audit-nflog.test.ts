import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { AuditRecord } from "@netfleet/shared";
import { PcapFormatError, PcapStreamReader, decodeNflog, ipv6Text, summarizePacket, toAuditRecord } from "./audit-nflog.ts";

/**
 * Fixtures captured from the kernel (6.18, tcpdump 4.99.3 / libpcap 1.10.3):
 * three namespaces vm (10.7.0.2, fd07::2, MAC 52:54:00:07:00:02) — gw — out
 * (10.8.0.2, fd08::2); in gw, `table inet t { chain forward { type filter
 * hook forward priority 0; policy drop; ct state established,related accept;
 * iifname "nfucg0" tcp dport 81 log prefix "nf drop x " group 7 drop;
 * iifname "nfucg0" ct state new log prefix "nf allow x " group 7 accept } }`
 * and `tcpdump -i nflog:7 -U -w FILE`. From vm:
 * - nflog-v4.pcap: ping 10.8.0.2; TCP connect to :80 (refused by out: RST)
 *   and to :81; a UDP datagram to :53.
 * - nflog-v6.pcap: TCP connect to [fd08::2]:443 and to [fd08::2]:81.
 */
const v4 = readFileSync(new URL("./fixtures/nflog-v4.pcap", import.meta.url));
const v6 = readFileSync(new URL("./fixtures/nflog-v6.pcap", import.meta.url));

function records(file: Buffer, chunk = file.length): (AuditRecord | string)[] {
  const reader = new PcapStreamReader();
  const out: (AuditRecord | string)[] = [];
  for (let i = 0; i < file.length; i += chunk) {
    for (const p of reader.push(file.subarray(i, i + chunk))) out.push(toAuditRecord(decodeNflog(p.data, reader.littleEndian), p.time, "x"));
  }
  return out;
}

describe("NFLOG pcap stream (real kernel capture)", () => {
  it("reads each logged packet as an audit record: verdict from the prefix, addresses, ports, ICMP, the VM's MAC", () => {
    const got = records(v4);
    expect(got).toHaveLength(4);
    for (const r of got) expect(AuditRecord.safeParse(r).success).toBe(true);
    const [ping, http, refused, dns] = got as AuditRecord[];
    expect(ping).toMatchObject({ network: "x", verdict: "allow", src: "10.7.0.2", dst: "10.8.0.2", proto: "icmp", icmp: { type: 8, code: 0 }, mac: "52:54:00:07:00:02" });
    expect(ping!.sport).toBeUndefined();
    expect(http).toMatchObject({ verdict: "allow", proto: "tcp", dst: "10.8.0.2", dport: 80 });
    expect(refused).toMatchObject({ verdict: "drop", proto: "tcp", src: "10.7.0.2", dst: "10.8.0.2", dport: 81, mac: "52:54:00:07:00:02" });
    expect(dns).toMatchObject({ verdict: "allow", proto: "udp", dport: 53 });
    expect(http!.sport).toBeGreaterThanOrEqual(1024);
    // Times from the capture: ms since the epoch, in order, all within the second the test ran in.
    const times = got.map((r) => Date.parse((r as AuditRecord).time));
    expect(times).toEqual([...times].sort((a, b) => a - b));
    expect(times.at(-1)! - times[0]!).toBeLessThan(1000);
    expect(new Date(times[0]!).getUTCFullYear()).toBeGreaterThanOrEqual(2024);
  });

  it("gives the same records whatever the chunking of the stream (a pipe delivers any split)", () => {
    const whole = records(v4);
    for (const chunk of [1, 3, 16, 17, 100]) expect(records(v4, chunk)).toEqual(whole);
  });

  it("reads IPv6 packets with RFC 5952 addresses", () => {
    const [allowed, dropped] = records(v6) as AuditRecord[];
    expect(allowed).toMatchObject({ verdict: "allow", src: "fd07::2", dst: "fd08::2", proto: "tcp", dport: 443 });
    expect(dropped).toMatchObject({ verdict: "drop", dst: "fd08::2", dport: 81 });
    expect(AuditRecord.safeParse(allowed).success).toBe(true);
  });

  it("skips messages that are not ours or name another network", () => {
    const reader = new PcapStreamReader();
    const [p] = reader.push(v4);
    const message = decodeNflog(p!.data, reader.littleEndian);
    expect(message).toMatchObject({ family: 2, group: 7, prefix: "nf allow x " });
    expect(toAuditRecord(message, p!.time, "other")).toBe("network");
    expect(toAuditRecord({ ...message, prefix: "IN=eth0 " }, p!.time, "x")).toBe("prefix");
    expect(toAuditRecord({ ...message, prefix: "nf allowx " }, p!.time, "x")).toBe("prefix");
    expect(toAuditRecord({ ...message, payload: new Uint8Array([0x45, 0]) }, p!.time, "x")).toBe("packet");
  });

  it("refuses a stream that is not an NFLOG pcap, and a record too long to be one", () => {
    expect(() => new PcapStreamReader().push(Buffer.from("not a pcap stream at all!!"))).toThrow(PcapFormatError);
    const ethernet = Buffer.from(v4.subarray(0, 24));
    ethernet.writeUInt32LE(1, 20);
    expect(() => new PcapStreamReader().push(ethernet)).toThrow(/link type 1, expected 239/);
    const huge = Buffer.from(v4.subarray(0, 40));
    huge.writeUInt32LE(10_000_000, 24 + 8);
    expect(() => new PcapStreamReader().push(huge)).toThrow(/10000000 bytes/);
  });

  it("keeps what a payload cut by the snapshot length still holds", () => {
    const reader = new PcapStreamReader();
    const [, http] = reader.push(v4);
    const cut = http!.data.subarray(0, http!.data.length - 30); // TCP options gone, ports still there
    const record = toAuditRecord(decodeNflog(cut, true), http!.time, "x") as AuditRecord;
    expect(record).toMatchObject({ proto: "tcp", dport: 80 });
    const short = summarizePacket(Buffer.from("4500001c000000004006000001020304050607080000", "hex"));
    expect(short).toEqual({ src: "1.2.3.4", dst: "5.6.7.8", proto: "tcp" });
  });

  it("formats IPv6 addresses as RFC 5952 says", () => {
    const hex = (s: string) => Buffer.from(s.replace(/:/g, ""), "hex");
    expect(ipv6Text(hex("2001:0db8:0000:0000:0000:0000:0000:0001"))).toBe("2001:db8::1");
    expect(ipv6Text(hex("2001:0db8:0000:0001:0000:0000:0000:0001"))).toBe("2001:db8:0:1::1");
    expect(ipv6Text(hex("2001:0db8:0001:0001:0001:0001:0000:0001"))).toBe("2001:db8:1:1:1:1:0:1");
    expect(ipv6Text(hex("0000:0000:0000:0000:0000:0000:0000:0000"))).toBe("::");
    expect(ipv6Text(hex("fe80:0000:0000:0000:0000:0000:0000:0000"))).toBe("fe80::");
  });
});
