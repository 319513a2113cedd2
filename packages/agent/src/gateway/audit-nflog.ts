import type { AuditRecord } from "@netfleet/shared";

/**
 * Reading what nft `log ... group G` sends to nflog group G, as
 * `tcpdump -i nflog:G -w -` writes it: a pcap stream of link type NFLOG.
 * Pure code: bytes in, records out.
 *
 * Formats:
 * - pcap: a 24-byte file header (magic 0xa1b2c3d4, or 0xa1b23c4d for ns
 *   timestamps, in the writer's byte order; link type at offset 20), then
 *   per packet a 16-byte header (ts_sec, ts_usec|ts_nsec, incl_len,
 *   orig_len) and incl_len bytes. Source: pcap-savefile(5).
 * - NFLOG (LINKTYPE_NFLOG = 239, https://www.tcpdump.org/linktypes/LINKTYPE_NFLOG.html):
 *   a 4-byte header (u8 address family, u8 version 0, u16 resource id =
 *   the group, big-endian), then TLVs: u16 length (header included), u16
 *   type, both in the capturing host's byte order, value padded to 4 bytes.
 *   Values inside TLVs are big-endian (netlink attributes of
 *   nfnetlink_log, linux/netfilter/nfnetlink_log.h).
 */

/** Link type of an NFLOG capture (pcap-linktype(7)). */
export const LINKTYPE_NFLOG = 239;

/** nfnetlink_log attribute types carried as TLVs (linux/netfilter/nfnetlink_log.h). */
export const NFULA = { PACKET_HDR: 1, HWADDR: 8, PAYLOAD: 9, PREFIX: 10 } as const;

/** Largest pcap record we accept, bytes: tcpdump's default snapshot (262144); more means a corrupt stream. */
const MAX_RECORD = 262_144;

/** One pcap record. `time` is epoch ms (sub-ms dropped). */
export interface PcapPacket {
  time: number;
  data: Uint8Array;
}

/** A stream that is not a pcap of what we expect; the reader cannot go on after one. */
export class PcapFormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "PcapFormatError";
  }
}

/**
 * Incremental pcap reader for a stream that arrives in chunks of any size.
 * `push` returns the packets completed by the chunk. Memory is bounded: at
 * most one partial record (≤ 256 KiB) is held.
 * @throws PcapFormatError on a bad magic, a link type other than
 *   `linkType`, or a record longer than 256 KiB.
 */
export class PcapStreamReader {
  /** Byte order of the stream's headers (and of NFLOG TLV headers, written on the same host). */
  littleEndian = true;
  private buffer: Buffer = Buffer.alloc(0);
  private headerRead = false;
  private nanos = false;
  private readonly linkType: number;

  constructor(linkType = LINKTYPE_NFLOG) {
    this.linkType = linkType;
  }

  push(chunk: Uint8Array): PcapPacket[] {
    this.buffer = this.buffer.length === 0 ? Buffer.from(chunk) : Buffer.concat([this.buffer, chunk]);
    const out: PcapPacket[] = [];
    if (!this.headerRead) {
      if (this.buffer.length < 24) return out;
      this.readFileHeader(this.buffer.subarray(0, 24));
      this.buffer = this.buffer.subarray(24);
      this.headerRead = true;
    }
    let offset = 0;
    while (this.buffer.length - offset >= 16) {
      const le = this.littleEndian;
      const sec = le ? this.buffer.readUInt32LE(offset) : this.buffer.readUInt32BE(offset);
      const frac = le ? this.buffer.readUInt32LE(offset + 4) : this.buffer.readUInt32BE(offset + 4);
      const incl = le ? this.buffer.readUInt32LE(offset + 8) : this.buffer.readUInt32BE(offset + 8);
      if (incl > MAX_RECORD) throw new PcapFormatError(`pcap record of ${incl} bytes (more than ${MAX_RECORD}): not a pcap stream we wrote`);
      if (this.buffer.length - offset - 16 < incl) break;
      const time = sec * 1000 + Math.floor(this.nanos ? frac / 1e6 : frac / 1e3);
      out.push({ time, data: Uint8Array.from(this.buffer.subarray(offset + 16, offset + 16 + incl)) });
      offset += 16 + incl;
    }
    this.buffer = this.buffer.subarray(offset);
    return out;
  }

  private readFileHeader(h: Buffer): void {
    const magicLe = h.readUInt32LE(0);
    if (magicLe === 0xa1b2c3d4 || magicLe === 0xa1b23c4d) this.littleEndian = true;
    else if (h.readUInt32BE(0) === 0xa1b2c3d4 || h.readUInt32BE(0) === 0xa1b23c4d) this.littleEndian = false;
    else throw new PcapFormatError(`not a pcap stream (magic 0x${h.readUInt32BE(0).toString(16)})`);
    const magic = this.littleEndian ? magicLe : h.readUInt32BE(0);
    this.nanos = magic === 0xa1b23c4d;
    const link = (this.littleEndian ? h.readUInt32LE(20) : h.readUInt32BE(20)) & 0x0fffffff;
    if (link !== this.linkType) throw new PcapFormatError(`pcap link type ${link}, expected ${this.linkType}`);
  }
}

/** One NFLOG message: its group, the rule's log prefix, the source MAC if any, and the packet from its network header. */
export interface NflogMessage {
  /** AF_INET (2) or AF_INET6 (10). */
  family: number;
  group: number;
  /** The `log prefix`, without its terminating NUL; "" when the rule had none. */
  prefix: string;
  /** NFULA_HWADDR when its length is 6: lowercase `aa:bb:cc:dd:ee:ff`. */
  mac?: string;
  /** The packet (possibly cut at the snapshot length), starting at the IP header. */
  payload: Uint8Array;
}

/**
 * Decodes one NFLOG record. `littleEndian` is the byte order of the TLV
 * headers (the pcap stream's). A TLV cut short by the snapshot length is
 * read as far as it goes (only the payload, the last TLV, is ever cut).
 * @throws PcapFormatError when the record is shorter than its header or a TLV length is below 4.
 */
export function decodeNflog(data: Uint8Array, littleEndian: boolean): NflogMessage {
  const b = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  if (b.length < 4) throw new PcapFormatError(`NFLOG record of ${b.length} bytes`);
  const message: NflogMessage = { family: b[0]!, group: b.readUInt16BE(2), prefix: "", payload: new Uint8Array(0) };
  let offset = 4;
  while (offset + 4 <= b.length) {
    const length = littleEndian ? b.readUInt16LE(offset) : b.readUInt16BE(offset);
    const type = (littleEndian ? b.readUInt16LE(offset + 2) : b.readUInt16BE(offset + 2)) & 0x7fff;
    if (length < 4) throw new PcapFormatError(`NFLOG TLV of length ${length} at offset ${offset}`);
    const value = b.subarray(offset + 4, Math.min(offset + length, b.length));
    if (type === NFULA.PREFIX) {
      const nul = value.indexOf(0);
      message.prefix = value.subarray(0, nul < 0 ? value.length : nul).toString("latin1");
    } else if (type === NFULA.PAYLOAD) {
      message.payload = Uint8Array.from(value);
    } else if (type === NFULA.HWADDR && value.length >= 10 && value.readUInt16BE(0) === 6) {
      message.mac = [...value.subarray(4, 10)].map((x) => x.toString(16).padStart(2, "0")).join(":");
    }
    offset += (length + 3) & ~3;
  }
  return message;
}

/** What the IP header (and the transport header after it) says. */
export interface PacketSummary {
  src: string;
  dst: string;
  proto: string;
  sport?: number;
  dport?: number;
  icmp?: { type: number; code: number };
}

const PROTO_NAMES: Record<number, string> = { 1: "icmp", 6: "tcp", 17: "udp", 58: "icmpv6" };

/**
 * Reads an IPv4 (RFC 791) or IPv6 (RFC 8200) packet's addresses, protocol,
 * and TCP/UDP ports or ICMP type/code. For IPv6 the protocol is the first
 * Next Header (extension headers are not walked: such packets read as
 * `ip-<n>`). Ports of a non-first IPv4 fragment are not read.
 * @returns undefined when the bytes are not an IP packet we can read.
 */
export function summarizePacket(p: Uint8Array): PacketSummary | undefined {
  const b = Buffer.from(p.buffer, p.byteOffset, p.byteLength);
  if (b.length < 1) return undefined;
  const version = b[0]! >> 4;
  let proto: number, l4: number, src: string, dst: string, firstFragment = true;
  if (version === 4) {
    const ihl = (b[0]! & 0x0f) * 4;
    if (b.length < 20 || ihl < 20) return undefined;
    proto = b[9]!;
    src = [...b.subarray(12, 16)].join(".");
    dst = [...b.subarray(16, 20)].join(".");
    firstFragment = (b.readUInt16BE(6) & 0x1fff) === 0;
    l4 = ihl;
  } else if (version === 6) {
    if (b.length < 40) return undefined;
    proto = b[6]!;
    src = ipv6Text(b.subarray(8, 24));
    dst = ipv6Text(b.subarray(24, 40));
    l4 = 40;
  } else return undefined;
  const summary: PacketSummary = { src, dst, proto: PROTO_NAMES[proto] ?? `ip-${proto}` };
  if (firstFragment && (proto === 6 || proto === 17) && b.length >= l4 + 4) {
    summary.sport = b.readUInt16BE(l4);
    summary.dport = b.readUInt16BE(l4 + 2);
  } else if (firstFragment && (proto === 1 || proto === 58) && b.length >= l4 + 2) {
    summary.icmp = { type: b[l4]!, code: b[l4 + 1]! };
  }
  return summary;
}

/** RFC 5952 text of 16 bytes: lowercase, leading zeros dropped, the longest run (≥ 2) of zero groups as `::`. */
export function ipv6Text(bytes: Uint8Array): string {
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((bytes[i]! << 8) | bytes[i + 1]!);
  let bestStart = -1, bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen && j - i >= 2) [bestStart, bestLen] = [i, j - i];
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(":");
  return `${hex.slice(0, bestStart).join(":")}::${hex.slice(bestStart + bestLen).join(":")}`;
}

/** The prefixes our rules log with: `nf allow <network> ` and `nf drop <network> ` (trailing space: nft puts none of its own). */
const PREFIX = /^nf (allow|drop) ([a-z][a-z0-9-]{0,11}) ?$/;

/** Why a message did not become a record. */
export type Skip = "prefix" | "network" | "packet";

/**
 * The audit record of one NFLOG message logged for `network`, or why not:
 * `prefix` (not one of ours), `network` (ours, but for another network
 * than the group belongs to), `packet` (not an IP packet we can read).
 */
export function toAuditRecord(message: NflogMessage, time: number, network: string): AuditRecord | Skip {
  const m = PREFIX.exec(message.prefix);
  if (!m) return "prefix";
  if (m[2] !== network) return "network";
  const packet = summarizePacket(message.payload);
  if (!packet) return "packet";
  return {
    time: new Date(time).toISOString(),
    network,
    verdict: m[1] as "allow" | "drop",
    ...packet,
    ...(message.mac ? { mac: message.mac } : {}),
  };
}
