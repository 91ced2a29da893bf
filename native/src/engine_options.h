// What the engine is built from (native/addon.ts EngineOptions): the spec, the base weights as file
// references, and the sizes of the KV cache and adapter slots.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "comm/comm_config.h"
#include "model_spec.h"
#include "tensor_ref.h"

namespace loraserve {

struct LayerWeightRefs {
  TensorRef inputNorm;
  TensorRef postAttentionNorm;
  TensorRef q, k, v, o;
  TensorRef gate, up, down;
};

struct BaseWeightRefs {
  TensorRef embedTokens;
  // Empty when the embeddings are tied: the output projection reuses embedTokens.
  std::optional<TensorRef> lmHead;
  TensorRef finalNorm;
  std::vector<LayerWeightRefs> layers;
};

enum class Device { Cpu, Cuda };

// The 16-bit type the CUDA backend keeps weights, activations and the KV cache in (native/addon.ts DeviceDtype).
enum class DeviceDtype { Float16, Bfloat16 };

struct EngineOptions {
  Device device = Device::Cpu;
  int rank = 0;
  int world = 1;
  // Where a group of world > 1 meets: rank 0 listens here, the others connect (comm/comm_config.h).
  std::string masterAddr = "127.0.0.1";
  int masterPort = 29500;
  ModelSpec spec;
  BaseWeightRefs weights;
  int numKvBlocks = 0;  // 0: the device backend sizes the cache from gpuMemoryFraction
  int blockSize = 0;
  int maxLoras = 0;  // -1 (device cuda): as many slots as fit in adapterMemoryFraction of the room after weights
  int maxLoraRank = 0;
  int threads = 0;
  double gpuMemoryFraction = 0.9;  // share of the GPU's total memory the engine may take (numKvBlocks 0)
  // maxLoras -1: the share of the engine's memory left after the weights that adapter slots take; the KV cache
  // is sized from what remains.
  double adapterMemoryFraction = 0.2;
  DeviceDtype dtype = DeviceDtype::Float16;  // device cuda only
  // Device cuda, world 1: run the tensor-parallel path anyway (a one-rank NCCL communicator and its
  // all-reduces), to check it and its cost against the plain path. World > 1 always takes it.
  bool tensorParallelPath = false;
  // Device cuda: the GPU this rank uses, among those CUDA_VISIBLE_DEVICES shows; -1: GPU `rank`.
  int gpu = -1;
};

inline CommConfig groupConfig(const EngineOptions& options) {
  CommConfig config;
  config.rank = options.rank;
  config.world = options.world;
  config.masterAddr = options.masterAddr;
  config.masterPort = options.masterPort;
  return config;
}

}  // namespace loraserve
