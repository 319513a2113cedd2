/** The attack rows of isolation: isolated ports, cluster groups, and floods into isolated ports. */
import type { LabVm } from "../types.ts";
import type { Frame, NeighbourWatch, Sender } from "./attack-types.ts";
import { arpRequestRow, BROADCAST, gwSender, vmPoint, vmSender, type Scene } from "./attack-scene.ts";

/** Isolation and cluster group rows: unicast between VMs (controls: the sender reaches the gateway, the gateway reaches the target), ARP within a group, broadcast ARP of an isolated VM. */
export function isolation(scene: Scene): void {
  const { gw, staticA, staticB, members, m1, m2, lone, nextPort, probes, gwAt, udpTo, udpSeen, dst, ownToGateway, gatewayTo } = scene;
  const unicast = (check: string, from: LabVm | undefined, target: LabVm | undefined, expect: "dropped" | "delivered") => {
    if (!from || !target) return;
    const s = vmSender(from);
    const p = nextPort();
    const where = from.host === target.host ? "same host" : "across hosts";
    probes.push({
      check: `${check} (${where})`,
      from: from.name,
      to: target.name,
      expect,
      sender: s,
      frames: [udpTo(s, dst(target), p)],
      look: { at: [vmPoint(target)], filter: udpSeen(s.ip, p) },
      controls: expect === "dropped" ? [ownToGateway(s, p), gatewayTo(target, p)] : [],
    });
  };
  const loneSameHost = members.find((m) => lone && m.host === lone.host);
  const loneOtherHost = members.find((m) => lone && m.host !== lone.host);
  unicast("isolated to isolated", lone, loneSameHost, "dropped");
  unicast("isolated to isolated", lone, loneOtherHost, "dropped");
  unicast("cluster group member to member", m1, m2, "delivered");
  unicast("cluster group member to member", m2, m1, "delivered");
  unicast("cluster group member to non-member", loneSameHost, lone, "dropped");
  unicast("cluster group member to non-member", loneOtherHost, lone, "dropped");
  unicast("cluster group member to non-member", m1, staticB, "dropped");
  unicast("isolated to non-isolated", lone, staticA, "dropped");
  unicast("non-isolated to isolated", staticB, lone, "dropped");
  if (m1 && m2) {
    // a group peer must find its peer by ARP across hosts, without static entries
    probes.push(arpRequestRow("cluster group arp (across hosts)", vmSender(m1), m2, "delivered"));
  }
  if (lone && staticA && staticB) {
    // an isolated VM's broadcast ARP goes to the gateway only
    const s = vmSender(lone);
    const frame: Frame = { kind: "arp", op: "request", src_mac: s.mac, dst_mac: BROADCAST, sha: s.mac, spa: s.ip, tpa: staticA.ip! };
    const filter = `arp and ether src ${s.mac} and arp dst host ${staticA.ip}`;
    probes.push({
      check: "isolated broadcast arp",
      from: lone.name,
      to: `${staticA.name}, ${staticB.name}`,
      expect: "dropped",
      sender: s,
      frames: [frame],
      look: { at: [vmPoint(staticA), vmPoint(staticB)], filter },
      controls: [{ what: "the same request at the gateway", look: { at: [gwAt], filter } }, gatewayTo(staticA, nextPort())],
    });
  }
  if (lone) probes.push(arpRequestRow("gateway broadcast to isolated", gwSender(gw), lone, "delivered"));
}

/** Flooding rows: unknown unicast and broadcast from a non-isolated VM must not reach isolated ports. */
export function flooding(scene: Scene): void {
  const { vms, isolated, staticA, staticB, strangerA, lone, nowhere, unknownMac, nextPort, probes, gwAt, udpTo, udpSeen, dst, ownToGateway, gatewayTo } = scene;
  const isolatedOn = (host: string | undefined) => vms.filter((v) => isolated(v) && v.host === host);
  const isolatedAll = vms.filter(isolated);
  if (staticA) {
    const s = vmSender(staticA);
    const p = nextPort();
    const seeSame = isolatedOn(staticA.host);
    const flooded = [strangerA, staticB].filter((v): v is LabVm => v !== undefined);
    probes.push({
      // No VM bridge floods: unknown unicast leaves by the uplink only, and reaches no VM port on any host
      // (isolated or not); the switches flood it, so the gateway's interface sees it (the control).
      check: "unknown unicast flood to isolated",
      from: staticA.name,
      to: `${unknownMac} (${[...isolatedAll, ...flooded].map((v) => v.name).join(", ")})`,
      expect: "dropped",
      sender: s,
      frames: [udpTo(s, { mac: unknownMac, ip: nowhere }, p)],
      look: { at: [...isolatedAll, ...flooded].map(vmPoint), filter: udpSeen(s.ip, p) },
      controls: [
        { what: "the frame itself out of the uplink, where the switches flood it (at the gateway's interface)", look: { at: [gwAt], filter: udpSeen(s.ip, p) } },
        ownToGateway(s, nextPort()),
      ],
    });
    if (seeSame.length > 0) {
      const q = nextPort();
      probes.push({
        check: "broadcast to isolated",
        from: staticA.name,
        to: isolatedAll.map((v) => v.name).join(", "),
        expect: "dropped",
        sender: s,
        frames: [udpTo(s, { mac: BROADCAST, ip: "255.255.255.255" }, q)],
        look: { at: isolatedAll.map(vmPoint), filter: udpSeen(s.ip, q) },
        controls: [{ what: `the broadcast at non-isolated ${flooded.map((v) => v.name).join(", ")}`, look: { at: flooded.map(vmPoint), filter: udpSeen(s.ip, q) } }],
      });
    }
  }
  if (staticB && lone) {
    // unicast to an isolated VM of another host: the sender's host never learned that MAC and may flood it
    const s = vmSender(staticB);
    const p = nextPort();
    const here = isolatedOn(staticB.host);
    if (here.length > 0) {
      probes.push({
        check: "flood of unicast for a remote isolated VM",
        from: staticB.name,
        to: `${lone.mac} (${here.map((v) => v.name).join(", ")})`,
        expect: "dropped",
        sender: s,
        frames: [udpTo(s, dst(lone), p)],
        look: { at: here.map(vmPoint), filter: udpSeen(s.ip, p) },
        controls: [ownToGateway(s, p), ...here.map((v) => gatewayTo(v, p))],
      });
    }
  }
}
