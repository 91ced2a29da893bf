// The young-generation size each server process the launcher starts gets. With hundreds of streams in flight the
// default 16 MiB semi-space fills every few milliseconds: V8's scavenges took 14.5 % of the shard's JS thread in
// the n = 1000 serve bench (H200, 2026-12-04), against 3 % with 64 MiB (2026-12-03). A size the user set (in
// NODE_OPTIONS or in the launcher's own Node flags, which the children would not otherwise see) wins.
const FLAG = "--max-semi-space-size";
const MIB = 64;

/** The flag to add to a child's Node flags: none when a semi-space size is already given. */
export function youngGenerationFlags(execArgv: readonly string[] = process.execArgv, nodeOptions = process.env.NODE_OPTIONS ?? ""): string[] {
  // Node takes V8 flags with dashes or underscores.
  const given = [...execArgv, ...nodeOptions.split(/\s+/)].some((arg) => arg.replaceAll("_", "-").startsWith(FLAG));
  return given ? execArgv.filter((arg) => arg.replaceAll("_", "-").startsWith(FLAG)) : [`${FLAG}=${MIB}`];
}
