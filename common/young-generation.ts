// The young-generation size each server process the launcher starts gets. With hundreds of streams in flight the
// default 16 MiB semi-space fills every few milliseconds: in the n = 1000 serve bench (H200, 2026-12-04, the last
// 35 s of the shard's profile: the load and its drain) garbage collection took 0.057 of the shard's JS thread with
// the default and 0.034 with 64 MiB. A size the user set (in NODE_OPTIONS or in the launcher's own Node flags, which
// the children would not otherwise see) wins.
const FLAG = "--max-semi-space-size";
const MIB = 64;

/** The flag to add to a child's Node flags: none when a semi-space size is already given. */
export function youngGenerationFlags(execArgv: readonly string[] = process.execArgv, nodeOptions = process.env.NODE_OPTIONS ?? ""): string[] {
  // Node takes V8 flags with dashes or underscores.
  const given = [...execArgv, ...nodeOptions.split(/\s+/)].some((arg) => arg.replaceAll("_", "-").startsWith(FLAG));
  return given ? execArgv.filter((arg) => arg.replaceAll("_", "-").startsWith(FLAG)) : [`${FLAG}=${MIB}`];
}
