// Prints the table nftRuleset makes of gateway-vm-services-spec.json (capture-vm-services.sh applies it).
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { NftTableSpec } from "@netfleet/shared";
import { nftRuleset } from "../../nft.ts";

const spec = NftTableSpec.parse(JSON.parse(readFileSync(join(import.meta.dirname, "gateway-vm-services-spec.json"), "utf8")));
process.stdout.write(nftRuleset(spec, { externalSubnets: ["203.0.113.0/24"] }).text);
