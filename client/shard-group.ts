// The command lines of the shard processes `loraserve serve --num-shard N` starts on this host: one per rank of
// a tensor-parallel group, all with the user's shard flags (each rank loads the same model with the same limits,
// or their engines would disagree), told apart only by --rank. Rank 0, the leader, serves ShardService and the
// metrics; the followers serve nothing, so they get no port flags.
import { flagOrEnv, isSet } from "../common/flag-or-env.js";
import { parseInteger } from "../common/parse-integer.js";

/** The flags that place a rank in its group; serve sets them for each rank. */
const GROUP_FLAGS = ["num-shard", "rank", "master-addr", "master-port"] as const;
/** What only the leader listens on. */
const LEADER_ONLY_FLAGS = ["shard-port", "metrics-port", "metrics-hostname"] as const;

export interface ShardGroupPlan {
  /** Ranks in the group; 1 is a plain shard. */
  world: number;
  /** Each rank's `loraserve shard` arguments, rank 0 first. */
  rankArgs: string[][];
}

/** The value of `--flag V` or `--flag=V` on a command line whose every flag takes a value (the shard's do). */
function flagValue(args: readonly string[], flag: string): string | undefined {
  let value: string | undefined;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === `--${flag}`) value = args[++i];
    else if (arg.startsWith(`--${flag}=`)) value = arg.slice(flag.length + 3);
  }
  return value;
}

/** The command line without these flags and their values. */
function withoutFlags(args: readonly string[], flags: readonly string[]): string[] {
  const kept: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    const flag = arg.split("=")[0]!.slice(2);
    if (!arg.startsWith("--") || !flags.includes(flag)) kept.push(arg);
    else if (!arg.includes("=")) i++;
  }
  return kept;
}

/**
 * Every rank's arguments from the shard's part of serve's command line. `leaderDefaults` are serve's own choices
 * for the leader (its port and metrics address, see shardDefaults); `freePort` is asked for a meeting port only
 * when the group has several ranks and the user named none.
 */
export async function planShardGroup(
  shardArgs: readonly string[],
  leaderDefaults: readonly string[],
  env: NodeJS.ProcessEnv,
  freePort: () => Promise<number>,
): Promise<ShardGroupPlan> {
  const world = parseInteger(flagOrEnv("num-shard", flagValue(shardArgs, "num-shard"), env), 1) ?? 1;
  if (world === 1) return { world, rankArgs: [[...leaderDefaults, ...shardArgs]] };
  if (isSet("rank", shardArgs, env)) throw new Error("serve gives each shard process its rank: leave --rank (and RANK) unset");
  // Through the environment, the children would read the user's address and port anyway; named here, every rank
  // is sure to get the same ones.
  const masterAddr = flagOrEnv("master-addr", flagValue(shardArgs, "master-addr"), env)?.text ?? "127.0.0.1";
  const masterPort = parseInteger(flagOrEnv("master-port", flagValue(shardArgs, "master-port"), env), 1, 65535) ?? (await freePort());
  const common = withoutFlags(shardArgs, GROUP_FLAGS);
  const followerArgs = withoutFlags(common, LEADER_ONLY_FLAGS);
  const group = (rank: number): string[] => ["--num-shard", String(world), "--rank", String(rank), "--master-addr", masterAddr, "--master-port", String(masterPort)];
  const rankArgs = [[...leaderDefaults, ...common, ...group(0)]];
  for (let rank = 1; rank < world; rank++) rankArgs.push([...followerArgs, ...group(rank)]);
  return { world, rankArgs };
}
