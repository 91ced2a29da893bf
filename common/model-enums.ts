// The proto's Dtype and Device enums and the names the code and the public JSON use ("float16", "cuda").
// The wire carries enums (a closed set the engine supports); TGI's /info and the shard's options keep the names.
import { Device, Dtype } from "../gen/loraserve/v1/model_pb.js";

export type DtypeName = "float32" | "float16" | "bfloat16";
export type DeviceName = "cpu" | "cuda";

const DTYPES: Record<DtypeName, Dtype> = { float32: Dtype.FLOAT32, float16: Dtype.FLOAT16, bfloat16: Dtype.BFLOAT16 };
const DEVICES: Record<DeviceName, Device> = { cpu: Device.CPU, cuda: Device.CUDA };

export const dtypeToProto = (name: DtypeName): Dtype => DTYPES[name];
export const deviceToProto = (name: DeviceName): Device => DEVICES[name];

/** The name of a received Dtype; "" for UNSPECIFIED (a shard that did not say). */
export function dtypeName(dtype: Dtype): DtypeName | "" {
  return (Object.keys(DTYPES) as DtypeName[]).find((name) => DTYPES[name] === dtype) ?? "";
}

/** The name of a received Device; "" for UNSPECIFIED. */
export function deviceName(device: Device): DeviceName | "" {
  return (Object.keys(DEVICES) as DeviceName[]).find((name) => DEVICES[name] === device) ?? "";
}
