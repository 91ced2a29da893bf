// `loraserve router` flags and their same-named environment variables.
import { describe, expect, it } from "vitest";
import { parseRouterOptions } from "../router/options.js";

const SHARD = ["--shard-uri", "http://127.0.0.1:1"];

describe("parseRouterOptions", () => {
  it("reads PORT and MAX_BODY_BYTES, and the flag wins", () => {
    expect(parseRouterOptions(SHARD, { PORT: "8080", MAX_BODY_BYTES: "1000" })).toMatchObject({ port: 8080, maxBodyBytes: 1000 });
    expect(parseRouterOptions([...SHARD, "--port", "9090"], { PORT: "8080" }).port).toBe(9090);
    expect(parseRouterOptions(SHARD, {})).toMatchObject({ port: 3000, maxBodyBytes: 2_000_000 });
  });

  it("names the environment variable when its integer is bad", () => {
    expect(() => parseRouterOptions(SHARD, { MAX_BODY_BYTES: "lots" })).toThrow('MAX_BODY_BYTES must be an integer >= 0, got "lots"');
    expect(() => parseRouterOptions(SHARD, { PORT: "70000" })).toThrow('PORT must be an integer from 0 to 65535, got "70000"');
  });

  it("serves TLS only with both --tls-cert and --tls-key, and names the one that lacks its pair", () => {
    expect(parseRouterOptions(SHARD, {}).tls).toBeNull();
    expect(parseRouterOptions([...SHARD, "--tls-cert", "/c.pem"], { TLS_KEY: "/k.pem" }).tls).toEqual({ certFile: "/c.pem", keyFile: "/k.pem" });
    expect(() => parseRouterOptions([...SHARD, "--tls-cert", "/c.pem"], {})).toThrow("--tls-cert needs its pair: TLS takes both --tls-cert and --tls-key");
    expect(() => parseRouterOptions(SHARD, { TLS_KEY: "/k.pem" })).toThrow("TLS_KEY needs its pair");
  });

  it("names each group by --shard-group-name, in --shard-uri order, by default by its URI", () => {
    const two = ["--shard-uri", "http://a:1", "--shard-uri", "http://b:1"];
    expect(parseRouterOptions(two, {}).shardGroupNames).toEqual(["http://a:1", "http://b:1"]);
    expect(parseRouterOptions([...two, "--shard-group-name", "east", "--shard-group-name", "west"], {}).shardGroupNames).toEqual(["east", "west"]);
    expect(parseRouterOptions(two, { SHARD_GROUP_NAME: "east,west" }).shardGroupNames).toEqual(["east", "west"]);
    expect(() => parseRouterOptions([...two, "--shard-group-name", "east"], {})).toThrow("1 --shard-group-name for 2 --shard-uri: give one name per URI, in order");
    expect(() => parseRouterOptions([...two, "--shard-group-name", "x", "--shard-group-name", "x"], {})).toThrow('--shard-group-name "x" is given twice');
    expect(() => parseRouterOptions([...SHARD, "--shard-group-name", ""], {})).toThrow("--shard-group-name may not be empty");
  });
});
