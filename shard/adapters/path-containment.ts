// The one check that keeps adapter reads inside their adapter root. Ids and paths come from users, so every
// directory and file is resolved (symlinks included) and refused unless its real path lies inside the root's
// real path; the root itself may be reached through a symlink, since its real path is what is compared.
import { promises as fs } from "node:fs";
import { sep } from "node:path";
import { AdapterError } from "./errors.js";

/** True when `path` is `root` or below it (not merely a name that starts like it); both must be real paths. */
export function isInside(path: string, root: string): boolean {
  return path === root || path.startsWith(root.endsWith(sep) ? root : root + sep);
}

/** The error of a path that does not exist (or runs through a file). */
export function isMissing(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException).code;
  return code === "ENOENT" || code === "ENOTDIR";
}

/**
 * Refuses `real` (a real path) unless it lies inside `root`; null `root` means the operator named the directory,
 * so nothing is checked. `label` names what the user asked for in the message.
 */
export function assertInside(real: string, root: string | null, label: string): void {
  if (root !== null && !isInside(real, root)) {
    throw new AdapterError("outside_root", `${label} leads outside the adapter root ${root} (a symlink or path out of it)`);
  }
}

/** The real path of `path`, null when nothing is there; refused (assertInside) when it leads outside `root`. */
export async function realpathInside(path: string, root: string | null, label: string): Promise<string | null> {
  let real: string;
  try {
    real = await fs.realpath(path);
  } catch (error) {
    if (isMissing(error)) return null;
    throw error;
  }
  assertInside(real, root, label);
  return real;
}
