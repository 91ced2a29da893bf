// loraserve.v1.AdapterService on the router: every call goes to the shard groups' leaders. Loads and unloads
// (after the admin token check) go to every group, so that any group can serve the adapter; listings merge
// what the groups report, with each adapter's directory shown to the admin only: the server's file layout is
// nobody else's business.
import { create } from "@bufbuild/protobuf";
import { createClient, type Client, type ServiceImpl } from "@connectrpc/connect";
import { AdapterService, ListAdaptersResponseSchema, UnloadAdapterResponseSchema, type Adapter } from "../gen/loraserve/v1/adapter_pb.js";
import type { AdminAuth } from "./admin-auth.js";
import type { ShardPool } from "./shard-pool.js";

/** One adapter as several groups report it: the highest tier any group has it in, and all their sequences. */
function mergeAdapters(reports: readonly Adapter[]): Adapter[] {
  const byId = new Map<string, Adapter>();
  for (const report of reports) {
    const seen = byId.get(report.id);
    if (!seen) byId.set(report.id, { ...report });
    else {
      seen.tier = Math.max(seen.tier, report.tier);
      seen.activeSequences += report.activeSequences;
    }
  }
  return [...byId.values()];
}

export class AdapterForwarder {
  private readonly leaders: Client<typeof AdapterService>[];

  constructor(
    pool: ShardPool,
    private readonly auth: AdminAuth,
  ) {
    this.leaders = pool.transports().map((transport) => createClient(AdapterService, transport));
  }

  /** Throws unless `authorization` carries the admin token (see AdminAuth). */
  checkAdmin(authorization: string | null | undefined): void {
    this.auth.check(authorization);
  }

  /** Adapters as the caller may see them: `path` empty unless `authorization` carries the admin token. */
  private shownTo(authorization: string | null | undefined, adapters: Adapter[]): Adapter[] {
    return this.auth.allows(authorization) ? adapters : adapters.map((adapter) => ({ ...adapter, path: "" }));
  }

  async list(authorization: string | null | undefined, signal: AbortSignal): Promise<Adapter[]> {
    const answers = await Promise.all(this.leaders.map((leader) => leader.listAdapters({}, { signal })));
    return this.shownTo(authorization, mergeAdapters(answers.flatMap((answer) => answer.adapters)));
  }

  /** The adapter as the groups that know it report it; the first refusal when none does. */
  async get(id: string, authorization: string | null | undefined, signal: AbortSignal): Promise<Adapter> {
    const answers = await Promise.allSettled(this.leaders.map((leader) => leader.getAdapter({ id }, { signal })));
    const found = answers.flatMap((answer) => (answer.status === "fulfilled" ? [answer.value] : []));
    if (found.length === 0) throw (answers[0] as PromiseRejectedResult).reason;
    return this.shownTo(authorization, mergeAdapters(found))[0] as Adapter;
  }

  async load(id: string, path: string, authorization: string | null | undefined, signal: AbortSignal): Promise<Adapter> {
    this.checkAdmin(authorization);
    const answers = await Promise.all(this.leaders.map((leader) => leader.loadAdapter({ id, path }, { signal })));
    return mergeAdapters(answers)[0] as Adapter;
  }

  /** `drain`: each group unloads once its sequences using the adapter finish, instead of refusing while any runs. */
  async unload(id: string, drain: boolean, authorization: string | null | undefined, signal: AbortSignal): Promise<void> {
    this.checkAdmin(authorization);
    await Promise.all(this.leaders.map((leader) => leader.unloadAdapter({ id, drain }, { signal })));
  }
}

export function adapterService(adapters: AdapterForwarder): ServiceImpl<typeof AdapterService> {
  return {
    listAdapters: async (_, context) => create(ListAdaptersResponseSchema, { adapters: await adapters.list(context.requestHeader.get("authorization"), context.signal) }),
    getAdapter: (request, context) => adapters.get(request.id, context.requestHeader.get("authorization"), context.signal),
    loadAdapter: (request, context) => adapters.load(request.id, request.path, context.requestHeader.get("authorization"), context.signal),
    unloadAdapter: async (request, context) => {
      await adapters.unload(request.id, request.drain, context.requestHeader.get("authorization"), context.signal);
      return create(UnloadAdapterResponseSchema);
    },
  };
}
