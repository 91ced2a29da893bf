// An adapter registry over a test's engine: the shard's defaults, no adapter roots unless the test gives some.
import type { ModelSpec, NativeEngine } from "../../native/addon.js";
import { AdapterRegistry, type AdapterSource, type RegistryOptions } from "../../shard/adapters/registry.js";
import { AdapterRoots } from "../../shard/adapters/roots.js";

export function registryOptions(spec: ModelSpec, overrides: Partial<RegistryOptions> = {}): RegistryOptions {
  return { spec, maxLoraRank: 64, maxLoras: 8, maxCpuLoras: 64, roots: new AdapterRoots([]), ...overrides };
}

export function openRegistry(
  engine: NativeEngine,
  spec: ModelSpec,
  sources: readonly AdapterSource[] = [],
  overrides: Partial<RegistryOptions> = {},
): Promise<AdapterRegistry> {
  return AdapterRegistry.open(engine, registryOptions(spec, overrides), sources);
}
