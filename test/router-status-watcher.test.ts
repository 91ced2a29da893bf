// The router's status watcher (router/status-watcher.ts) against a fake shard client: its first poll at start,
// down detection at the first unanswered poll, backoff while the group does not answer, and readers that never
// ask the shard anything themselves.
import { create } from "@bufbuild/protobuf";
import { afterEach, beforeEach, expect, it, vi } from "vitest";
import { StatusResponseSchema, type StatusResponse } from "../gen/loraserve/v1/shard_pb.js";
import { StatusWatcher, type StatusSource } from "../router/status-watcher.js";

const TIMINGS = { periodMs: 1000, answerTimeoutMs: 1000, maxBackoffMs: 4000 };

class FakeSource implements StatusSource {
  calls = 0;
  answering = true;
  status(): Promise<StatusResponse> {
    this.calls += 1;
    return this.answering ? Promise.resolve(create(StatusResponseSchema, { ready: true })) : Promise.reject(new Error("unreachable"));
  }
}

beforeEach(() => vi.useFakeTimers());
afterEach(() => vi.useRealTimers());

it("polls at start, and readers of the view make no call", async () => {
  const source = new FakeSource();
  const watcher = new StatusWatcher(source, TIMINGS);
  expect(source.calls).toBe(1);
  await watcher.firstView();
  for (let i = 0; i < 10; i++) expect(watcher.status?.ready).toBe(true);
  expect(watcher.hasView).toBe(true);
  expect(source.calls).toBe(1);
  watcher.stop();
});

it("sees a group down at its first unanswered poll, then backs off up to the bound, and recovers at the next answer", async () => {
  const source = new FakeSource();
  const watcher = new StatusWatcher(source, TIMINGS);
  await watcher.firstView();
  source.answering = false;
  await vi.advanceTimersByTimeAsync(1000);
  expect(source.calls).toBe(2);
  expect(watcher.status).toBeUndefined();
  // Unanswered: 2 s, then 4 s, then 4 s (the bound) between polls.
  await vi.advanceTimersByTimeAsync(1999);
  expect(source.calls).toBe(2);
  await vi.advanceTimersByTimeAsync(1);
  expect(source.calls).toBe(3);
  await vi.advanceTimersByTimeAsync(4000);
  expect(source.calls).toBe(4);
  await vi.advanceTimersByTimeAsync(4000);
  expect(source.calls).toBe(5);
  source.answering = true;
  await vi.advanceTimersByTimeAsync(4000);
  expect(watcher.status?.ready).toBe(true);
  // Answered again: back to the period.
  await vi.advanceTimersByTimeAsync(1000);
  expect(source.calls).toBe(7);
  watcher.stop();
});

it("counts a group marked down as down until its next answer, telling its listeners", async () => {
  const source = new FakeSource();
  const watcher = new StatusWatcher(source, TIMINGS);
  await watcher.firstView();
  const heard = vi.fn();
  watcher.onView(heard);
  watcher.markDown();
  expect(watcher.status).toBeUndefined();
  expect(heard).toHaveBeenCalledTimes(1);
  await vi.advanceTimersByTimeAsync(1000);
  expect(watcher.status?.ready).toBe(true);
  expect(heard).toHaveBeenCalledTimes(2);
  watcher.stop();
});
