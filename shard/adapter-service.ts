// loraserve.v1.AdapterService on the shard leader (proto/loraserve/v1/adapter.proto): the registry's view and
// its load/unload. The shard's port is internal; the router checks the admin token before forwarding loads and
// unloads here, and shows listed paths to the admin only. GetAdapter answers anyone: its errors name no path.
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import {
  AdapterSchema,
  AdapterService,
  AdapterTier,
  ListAdaptersResponseSchema,
  UnloadAdapterResponseSchema,
  type Adapter,
} from "../gen/loraserve/v1/adapter_pb.js";
import { AdapterError, type AdapterErrorKind } from "./adapters/errors.js";
import type { AdapterDescription, AdapterRegistry, AdapterTier as Tier } from "./adapters/registry.js";
import type { RedactPaths } from "./redact-paths.js";

const CODE_OF_KIND: Record<AdapterErrorKind, Code> = {
  not_found: Code.NotFound,
  invalid: Code.InvalidArgument,
  outside_root: Code.PermissionDenied,
  in_use: Code.FailedPrecondition,
  conflict: Code.AlreadyExists,
  unloading: Code.FailedPrecondition,
};

const TIER: Record<Tier, AdapterTier> = { disk: AdapterTier.DISK, host: AdapterTier.HOST, device: AdapterTier.DEVICE };

/** `redact` for the answers anyone may read; the admin's own calls keep their paths. */
export function adapterConnectError(error: AdapterError, redact: RedactPaths = (message) => message): ConnectError {
  return new ConnectError(redact(error.message), CODE_OF_KIND[error.kind]);
}

function adapterMessage(adapter: AdapterDescription): Adapter {
  return create(AdapterSchema, {
    id: adapter.id,
    path: adapter.dir,
    tier: TIER[adapter.tier],
    rank: adapter.config?.rank ?? 0,
    alpha: adapter.config?.alpha ?? 0,
    targetModules: adapter.config?.targets ?? [],
    activeSequences: adapter.activeSequences,
    hasChatTemplate: adapter.hasChatTemplate,
  });
}

async function answer<T>(work: () => Promise<T>, redact?: RedactPaths): Promise<T> {
  try {
    return await work();
  } catch (error) {
    throw error instanceof AdapterError ? adapterConnectError(error, redact) : error;
  }
}

export function adapterServiceImpl(adapters: AdapterRegistry, redact: RedactPaths): ServiceImpl<typeof AdapterService> {
  return {
    listAdapters: () => create(ListAdaptersResponseSchema, { adapters: adapters.list().map(adapterMessage) }),
    getAdapter: (request) => answer(async () => adapterMessage(await adapters.get(request.id)), redact),
    loadAdapter: (request) => answer(async () => adapterMessage(await adapters.load(request.id, request.path))),
    unloadAdapter: (request) =>
      answer(async () => {
        await adapters.unload(request.id, { drain: request.drain });
        return create(UnloadAdapterResponseSchema);
      }),
  };
}
