// The shard command lines of `loraserve serve --num-shard N`: every rank gets the user's shard flags and the
// same meeting point, only the leader gets the port flags, and one rank stays the plain shard of old.
import { describe, expect, it } from "vitest";
import { planShardGroup } from "../client/shard-group.js";

const LEADER_DEFAULTS = ["--shard-port", "0", "--metrics-port", "0", "--metrics-hostname", "0.0.0.0"];
const noPort = (): Promise<number> => Promise.reject(new Error("no free port was needed"));

describe("planShardGroup", () => {
  it("is the single shard of old without --num-shard", async () => {
    const args = ["--model-id", "m", "--max-loras", "2"];
    expect(await planShardGroup(args, LEADER_DEFAULTS, {}, noPort)).toEqual({ world: 1, rankArgs: [[...LEADER_DEFAULTS, ...args]] });
  });

  it("gives every rank the shard flags and one meeting port, and the leader alone its ports", async () => {
    const args = ["--model-id", "m", "--num-shard", "3", "--metrics-port=9000", "--threads", "1"];
    const plan = await planShardGroup(args, LEADER_DEFAULTS, {}, () => Promise.resolve(4321));
    const group = (rank: number): string[] => ["--num-shard", "3", "--rank", String(rank), "--master-addr", "127.0.0.1", "--master-port", "4321"];
    expect(plan).toEqual({
      world: 3,
      rankArgs: [
        [...LEADER_DEFAULTS, "--model-id", "m", "--metrics-port=9000", "--threads", "1", ...group(0)],
        ["--model-id", "m", "--threads", "1", ...group(1)],
        ["--model-id", "m", "--threads", "1", ...group(2)],
      ],
    });
  });

  it("takes the group size and meeting point from the environment too, the flag winning", async () => {
    const plan = await planShardGroup(["--master-addr", "10.0.0.5"], [], { NUM_SHARD: "2", MASTER_ADDR: "10.0.0.9", MASTER_PORT: "29600" }, noPort);
    expect(plan.rankArgs[1]).toEqual(["--num-shard", "2", "--rank", "1", "--master-addr", "10.0.0.5", "--master-port", "29600"]);
  });

  it("refuses a rank, which serve assigns, and a bad group size", async () => {
    await expect(planShardGroup(["--num-shard", "2", "--rank", "1"], [], {}, noPort)).rejects.toThrow(/--rank/);
    await expect(planShardGroup(["--num-shard", "0"], [], {}, noPort)).rejects.toThrow(/--num-shard must be an integer >= 1/);
    await expect(planShardGroup([], [], { NUM_SHARD: "two" }, noPort)).rejects.toThrow(/NUM_SHARD must be an integer/);
  });
});
