// The waiting sequences, handed out fairly across adapters. One batch serves many adapters, and admission is
// where they compete for prefill budget and KV blocks: in one FCFS queue, an adapter that submits a thousand
// requests would hold back every other adapter's single request until all of its own were in. So each adapter
// (the base model alone is one more) keeps its own FIFO queue, and the next to be admitted is the head of the
// adapter that has been given the fewest prompt tokens so far: fair queuing on prefill work, which is what
// admission spends, rather than on request counts (one long prompt costs as much as many short ones).
//
// An adapter that runs out of waiting sequences is forgotten; when it comes back it starts at the current
// virtual time (the count of the adapter last admitted), so time spent idle is not credit to spend in a burst.
// Then the counts of the adapters that can run stay within one admission of each other, so while a sequence
// is first in its adapter's queue (and can run), every other adapter is admitted at most 2 × L tokens before
// it, L being the most tokens one admission computes (a prompt; prompt and generated ones when recomputed).
// An adapter that was loading into a slot may lag behind and catch up, by as much as it fell behind.
import type { Sequence } from "./sequence.js";

interface Tenant {
  /** Waiting sequences in arrival order (a preempted one goes back to the front). */
  readonly queue: Sequence[];
  /** Prompt tokens admitted so far, counted from the virtual time when the adapter last became active. */
  served: number;
  /** When the adapter last had a sequence admitted (-1: not since it became active): breaks ties in `served`. */
  lastServedAt: number;
}

export class FairQueue {
  /** Adapters with waiting sequences, in the order they became active (the last tie-break). */
  private readonly tenants = new Map<string, Tenant>();
  private virtualTime = 0;
  private admissions = 0;
  private count = 0;

  get length(): number {
    return this.count;
  }

  /** A new arrival: last in its adapter's queue. */
  push(seq: Sequence): void {
    this.tenantOf(seq).queue.push(seq);
    this.count++;
  }

  /** A preempted sequence: first in its adapter's queue, since it was admitted before all the others there. */
  unshift(seq: Sequence): void {
    this.tenantOf(seq).queue.unshift(seq);
    this.count++;
  }

  /** Whom to admit next, leaving the queue as it is: the scheduler may find no room for it this step. */
  peek(runnable: (seq: Sequence) => boolean): Sequence | undefined {
    let best: Tenant | undefined;
    for (const tenant of this.tenants.values()) {
      // All of one adapter's sequences wait for the same slot, so a head that cannot run speaks for its queue.
      if (!runnable(tenant.queue[0] as Sequence)) continue;
      if (best === undefined || tenant.served < best.served || (tenant.served === best.served && tenant.lastServedAt < best.lastServedAt)) {
        best = tenant;
      }
    }
    return best?.queue[0];
  }

  /** Admits `seq` (the one `peek` gave): its adapter is charged the prompt tokens it will compute. */
  admit(seq: Sequence): void {
    const tenant = this.tenants.get(seq.request.adapterId);
    if (tenant?.queue[0] !== seq) throw new Error(`sequence ${seq.id} is not first in its adapter's queue`);
    tenant.queue.shift();
    this.count--;
    // A loading adapter can lag behind the virtual time; it must not pull the time back for newcomers.
    this.virtualTime = Math.max(this.virtualTime, tenant.served);
    // A preempted sequence is charged again: recomputing it spends prefill budget like any prompt.
    tenant.served += seq.pendingTokens;
    tenant.lastServedAt = this.admissions++;
    if (tenant.queue.length === 0) this.tenants.delete(seq.request.adapterId);
  }

  /** Takes out a sequence that ends while waiting (its client went away, or its adapter failed to load). */
  remove(seq: Sequence): void {
    const tenant = this.tenants.get(seq.request.adapterId);
    const at = tenant ? tenant.queue.indexOf(seq) : -1;
    if (tenant === undefined || at < 0) throw new Error(`sequence ${seq.id} is not waiting`);
    tenant.queue.splice(at, 1);
    this.count--;
    if (tenant.queue.length === 0) this.tenants.delete(seq.request.adapterId);
  }

  private tenantOf(seq: Sequence): Tenant {
    const { adapterId } = seq.request;
    let tenant = this.tenants.get(adapterId);
    if (tenant === undefined) {
      tenant = { queue: [], served: this.virtualTime, lastServedAt: -1 };
      this.tenants.set(adapterId, tenant);
    }
    return tenant;
  }
}
