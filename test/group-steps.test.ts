// A step that fails in a tensor-parallel group ends its requests as the shard's going down does (UNAVAILABLE
// at the shard's API), naming the failure; a step that succeeds is untouched, and so is the loop's resume from idle.
import { describe, expect, it } from "vitest";
import type { NativeEngine } from "../native/addon.js";
import { groupSteps } from "../shard/engine/group-steps.js";
import { ShuttingDownError } from "../shard/engine/llm-engine.js";

type Step = NativeEngine["step"];
const resumeFromIdle = (): void => undefined;

describe("groupSteps", () => {
  it("passes a step's results on", async () => {
    const results = [{ token: 7 }] as unknown as Awaited<ReturnType<Step>>;
    expect(await groupSteps({ step: () => Promise.resolve(results), resumeFromIdle }).step([])).toBe(results);
  });

  it("passes the loop's resume from idle on", () => {
    let resumes = 0;
    groupSteps({ step: () => Promise.resolve([]), resumeFromIdle: () => void resumes++ }).resumeFromIdle();
    expect(resumes).toBe(1);
  });

  it("turns a failed step into a ShuttingDownError that names the failure", async () => {
    const failing: Step = () => Promise.reject(new Error("gloo all-reduce of 96 floats failed on rank 0 of 2: Connection closed by peer"));
    const error = await groupSteps({ step: failing, resumeFromIdle }).step([]).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ShuttingDownError);
    expect((error as Error).message).toBe("the tensor-parallel group failed: gloo all-reduce of 96 floats failed on rank 0 of 2: Connection closed by peer");
  });
});
