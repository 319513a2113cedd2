/** Prints the ruleset nftRuleset makes of gateway-spec.json (with wan0's subnet 203.0.113.0/24 and one carried name-set element): used by capture-gateway.sh. */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { NftTableSpec } from "@netfleet/shared";
import { nftRuleset } from "../../nft-rules.ts";

const spec = NftTableSpec.parse(JSON.parse(readFileSync(join(import.meta.dirname, "gateway-spec.json"), "utf8")));
process.stdout.write(nftRuleset(spec, { externalSubnets: ["203.0.113.0/24"] }, { dns_9a2a437a32e5: [{ val: "198.51.100.7", expires: 60 }] }).text);
