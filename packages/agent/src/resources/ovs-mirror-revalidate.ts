import { mutate, type Command } from "../exec/runner.ts";
import { appctlArgv } from "../show/read-counters.ts";
import type { Toolbox } from "../tools.ts";

/**
 * `ovs-appctl revalidator/purge` against this host's ovs-vswitchd: deletes
 * every datapath flow, so the next packet of each conversation is translated
 * again, with the Mirror table as it is now.
 *
 * Needed after every Mirror row we create, change or remove. ovs-vswitchd
 * applies a Mirror row to its OpenFlow bridge (ofproto/ofproto-dpif-mirror.c
 * mirror_set, mirror_destroy) without asking for the datapath flows to be
 * revalidated: only a port leaving a mirror's selection does that
 * (mbridge_unregister_bundle). A datapath flow installed before the change
 * keeps its old actions until it idles out (Open_vSwitch
 * other_config:max-idle, 10 s by default, ovs-vswitchd.conf.db(5)), and a
 * flow kept busy never does. Measured on OVS 3.1 (the userspace datapath,
 * one bridge, explicit output rules, a VM pinging another every 0.2 s): a
 * Mirror created while the conversation ran copied 0 of its frames for as
 * long as it ran; after revalidator/purge (or any OpenFlow rule change,
 * which revalidates every flow) the next frame was copied; with the
 * conversation idle for 10 s first, every frame was. So without it a busy
 * VM is not mirrored after a rollout, is still mirrored after its mirror is
 * gone, and a direction change takes effect only for new conversations.
 *
 * It is ovs-vswitchd-wide (every bridge of the host): the next frame of each
 * live conversation goes through ovs-vswitchd's slow path once (an upcall)
 * and installs its flow again. Run only by a pass that changed a Mirror row,
 * never by a no-op one.
 * Throws nothing itself; the engine reports a failed run (no ovs-vswitchd
 * control socket) as the resource's error.
 */
export function purgeDatapathFlows(tools: Toolbox): Command {
  return mutate(appctlArgv(tools, "revalidator/purge"));
}
